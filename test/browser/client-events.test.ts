import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

// The client library in Chromium's own EventSource: a message whose event name the page never
// listed reaches it anyway (the server names each event first), and one with no handler is held,
// reported and handed to a handler registered later: never acked unseen, never dropped unseen.
const WAIT = { timeout: 20_000 };
let redis: TestRedis;
let app: TestApp;
let browser: Browser;

beforeAll(async () => {
  ensureClientBuilt();
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 2000 });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await redis?.stop();
});

/** A page on postbox's own origin that imports the client and records what it sees in `window.seen`. */
async function page(userId: string, script: string): Promise<Page> {
  const token = await app.token(userId);
  const p = await browser.newPage();
  await p.goto(`${app.url}/healthz`);
  // A string, not a function: the test runner would rewrite a dynamic import() in a function.
  await p.evaluate(`(async () => {
    const { connect } = await import('/client/postbox.js');
    window.seen = [];
    const seen = window.seen;
    const client = connect({ url: '', token: ${JSON.stringify(token)}, backoff: { minMs: 100, maxMs: 500 } });
    window.client = client;
    client.onLifecycle((e) => {
      if (e.type === 'unhandled') seen.push('unhandled ' + e.message.event + ' ' + JSON.stringify(e.message.data));
    });
    ${script}
    await new Promise((resolve) => client.onState((s) => s === 'open' && resolve()));
  })()`);
  return p;
}

const seen = (p: Page) => p.evaluate(() => (globalThis as unknown as { seen: string[] }).seen);
const view = async (userId: string) =>
  (await (await app.admin(`/admin/queues/${userId}`)).json()) as { waiting: number; inflight: number; dead: number };

const waitFor = (p: Page, predicate: (seen: string[]) => boolean, what: string): Promise<string[]> =>
  eventually(() => seen(p), predicate, what, { timeoutMs: WAIT.timeout, intervalMs: 50 });

describe('event names the page never listed', () => {
  it('reach a handler registered for them with on(), though `events` never named them', async () => {
    const p = await page('named', `client.on('invoice.paid', (m) => void seen.push('paid ' + JSON.stringify(m.data)));`);
    await app.enqueue('named', { n: 1 }, { event: 'invoice.paid' });
    await app.enqueue('named', { n: 2 }, { event: 'invoice.paid' });
    await waitFor(p, (s) => s.length === 2, 'both messages were handled');
    expect(await seen(p)).toEqual(['paid {"n":1}', 'paid {"n":2}']);
    const deadline = Date.now() + WAIT.timeout;
    while ((await view('named')).inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await view('named')).toMatchObject({ waiting: 0, inflight: 0 });
    await p.close();
  });

  it('are held unacked when no handler takes them, reported, and handed to a handler registered later', async () => {
    const p = await page('late', `client.on('message', (m) => void seen.push('message ' + JSON.stringify(m.data)));`);
    await app.enqueue('late', { report: 7 }, { event: 'report.ready' });
    await app.enqueue('late', 'plain');
    await waitFor(p, (s) => s.length === 2, 'the unhandled report and the plain message');
    expect(await seen(p)).toEqual(['unhandled report.ready {"report":7}', 'message "plain"']);
    // The plain one is acked (acks go out in batches); the report is not: in flight, not a dead letter.
    const until = Date.now() + WAIT.timeout;
    while ((await view('late')).inflight > 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(await view('late')).toMatchObject({ inflight: 1, dead: 0 });
    await p.evaluate(() => {
      const w = globalThis as unknown as { seen: string[]; client: { on(e: string, h: (m: { data: unknown }) => void): void } };
      w.client.on('report.ready', (m) => void w.seen.push(`late handler ${JSON.stringify(m.data)}`));
    });
    await waitFor(p, (s) => s.includes('late handler {"report":7}'), 'the late handler got it');
    const deadline = Date.now() + WAIT.timeout;
    while ((await view('late')).inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await view('late')).toMatchObject({ waiting: 0, inflight: 0, dead: 0 });
    await p.close();
  });
});
