import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { spawnServer, TEST_KEYS, type ServerProcess } from '../helpers/spawn-server.js';
import { freePort, startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

// A page with the real client (served at /client/postbox.js) in headless Chromium, and a real
// server process stopped with SIGTERM and started again on the same port.
const WAIT_MS = 30_000;
let redis: TestRedis;
let browser: Browser;
let server: ServerProcess | undefined;
let port: number;
const env = () => ({ REDIS_URL: redis.url, KEY_PREFIX: 'restart', DRAIN_INTERVAL_MS: 50 });
const headers = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };

beforeAll(async () => {
  ensureClientBuilt();
  redis = await startRedis();
  port = await freePort();
  server = await spawnServer(env(), port);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.kill('SIGKILL');
  await redis?.stop();
});

async function enqueue(text: string): Promise<void> {
  const res = await fetch(`${server!.url}/v1/users/returning/messages`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ event: 'note', data: { text } }),
  });
  expect(res.status).toBe(201);
}

interface PageLog {
  states: string[];
  lifecycle: Array<{ type: string; attempt?: number; delayMs?: number }>;
  received: string[];
}

const readLog = (page: Page) => page.evaluate(() => (globalThis as unknown as { pb: PageLog }).pb);

const until = (page: Page, done: (log: PageLog) => boolean, what: string): Promise<PageLog> =>
  eventually(() => readLog(page), done, what, WAIT_MS);

describe('a server restart', () => {
  it('sends postbox.restart, and the client comes back with short jittered retries instead of a long backoff', async () => {
    const tokenRes = await fetch(`${server!.url}/v1/tokens`, { method: 'POST', headers, body: '{"userId":"returning"}' });
    const { token } = (await tokenRes.json()) as { token: string };
    const page = await browser.newPage();
    await page.goto(`${server!.url}/healthz`); // any page of the origin
    // As a page's own script (a string, so the test's bundler leaves its import() alone).
    await page.evaluate(`(async () => {
      const log = { states: [], lifecycle: [], received: [] };
      globalThis.pb = log;
      const { connect } = await import('/client/postbox.js');
      const client = connect({ url: '', token: ${JSON.stringify(token)}, events: ['note'] });
      client.onState((s) => log.states.push(s));
      client.onLifecycle((e) => log.lifecycle.push({ type: e.type, attempt: e.attempt, delayMs: e.delayMs }));
      client.on('note', (m) => void log.received.push(m.data.text));
    })()`);
    await until(page, (l) => l.states.includes('open'), 'the first open');
    await enqueue('before');
    await until(page, (l) => l.received.includes('before'), 'the message before the restart');

    expect(await server!.kill('SIGTERM')).toBe(0);
    const notice = await until(page, (l) => l.lifecycle.some((e) => e.type === 'reconnecting'), 'the restart notice');
    const seen = notice.lifecycle.findIndex((e) => e.type === 'reconnecting');
    server = await spawnServer(env(), port);
    const upAt = Date.now();
    const back = await until(page, (l) => l.lifecycle.slice(seen).some((e) => e.type === 'open'), 'the page to come back');
    const backAfterMs = Date.now() - upAt;

    // Connection events only: an ack under way when the server stopped may report an `error` (it is retried).
    const connection = back.lifecycle.filter((e) => e.type !== 'error');
    const afterNotice = connection.slice(connection.findIndex((e) => e.type === 'reconnecting'));
    const [told, ...retries] = afterNotice.slice(0, afterNotice.findIndex((e) => e.type === 'open'));
    // The server's notice: not a failure (attempt 0), a delay within its 1 s spread.
    expect(told).toMatchObject({ type: 'reconnecting', attempt: 0 });
    expect(told?.delayMs).toBeLessThan(1000);
    // While it restarts, every retry waits under afterRestartMs (1 s), never the growing backoff:
    // so the page is back within about a second of the server being up.
    expect(retries.length).toBeGreaterThan(0);
    for (const retry of retries) expect(retry).toMatchObject({ type: 'reconnecting' });
    expect(Math.max(...retries.map((r) => r.delayMs ?? Infinity))).toBeLessThan(1000);
    console.log(`page back ${backAfterMs} ms after the restarted server answered /readyz (${retries.length} retries)`);

    await enqueue('after');
    await until(page, (l) => l.received.includes('after'), 'the message after the restart');
    expect((await readLog(page)).received).toEqual(['before', 'after']);
    await page.close();
  });
});
