import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse, sleep } from '../helpers/read-sse.js';
import { spawnServer, TEST_KEYS } from '../helpers/spawn-server.js';

let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const producerHeaders = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };

async function enqueueAt(url: string, userId: string, data: unknown): Promise<string> {
  const res = await fetch(`${url}/v1/users/${userId}/messages`, {
    method: 'POST',
    headers: producerHeaders,
    body: JSON.stringify({ data }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function tokenAt(url: string, userId: string): Promise<string> {
  const res = await fetch(`${url}/v1/tokens`, { method: 'POST', headers: producerHeaders, body: JSON.stringify({ userId }) });
  return ((await res.json()) as { token: string }).token;
}

describe('faults', () => {
  it('loses no unacked message when the server process is SIGKILLed', async () => {
    const env = { REDIS_URL: redis.url, KEY_PREFIX: 'kill', ACK_TIMEOUT_MS: 60_000, DRAIN_INTERVAL_MS: 50 };
    const first = await spawnServer(env);
    const token = await tokenAt(first.url, 'survivor');
    const sse = await openSse(`${first.url}/v1/stream?token=${token}`);
    const ids: string[] = [];
    for (let i = 0; i < 20; i += 1) ids.push(await enqueueAt(first.url, 'survivor', i));
    // Delivered but not acked: in flight when the process dies.
    await sse.waitFor(20);
    const offline: string[] = [];
    sse.close();
    for (let i = 20; i < 30; i += 1) offline.push(await enqueueAt(first.url, 'survivor', i));
    expect(await first.kill('SIGKILL')).toBe(-1);

    const second = await spawnServer(env);
    try {
      const again = await openSse(`${second.url}/v1/stream?token=${token}`);
      const events = await again.waitFor(30, 10_000);
      expect(events.map((e) => e.id)).toEqual([...ids, ...offline]);
      again.close();
    } finally {
      await second.kill('SIGTERM');
    }
  });

  it('loses no answered enqueue when redis-server is SIGKILLed and restarts from its append-only file', async () => {
    const app = await startApp(redis.url, { KEY_PREFIX: 'aof' });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 200; i += 1) ids.push(await app.enqueue(`aof-${i % 4}`, { i }));
      await redis.kill('SIGKILL');
      await redis.restart();
      const check = redis.client();
      let total = 0;
      for (let u = 0; u < 4; u += 1) {
        const entries = await check.xrange(`aof:{aof-${u}}:m`, '-', '+');
        expect(entries.map(([id]) => id)).toEqual(ids.filter((_, i) => i % 4 === u));
        total += entries.length;
      }
      expect(total).toBe(200);
      // The node reconnects by itself and delivers them.
      await waitFor(async () => (await fetch(`${app.url}/readyz`)).status === 200, 10_000);
      const sse = await openSse(`${app.url}/v1/stream?token=${await app.token('aof-0')}`);
      const events = await sse.waitFor(50, 10_000);
      expect(events.map((e) => e.id)).toEqual(ids.filter((_, i) => i % 4 === 0));
      sse.close();
    } finally {
      await app.close();
    }
  });

  it('answers 503 at once while Redis is down, keeps streams open, and resumes when it returns', async () => {
    const app = await startApp(redis.url, { KEY_PREFIX: 'down', DRAIN_INTERVAL_MS: 100, HEARTBEAT_MS: 1000 });
    try {
      const token = await app.token('patient');
      const sse = await openSse(`${app.url}/v1/stream?token=${token}`);
      const before = await app.enqueue('patient', 'before');
      await sse.waitFor(1);
      await app.ack(token, [before]);

      await redis.kill('SIGKILL');
      const started = Date.now();
      const res = await app.produce('/v1/users/patient/messages', { data: 'during' });
      const took = Date.now() - started;
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_REDIS_UNAVAILABLE');
      // No hanging request: it fails at once, not after a client timeout.
      expect(took).toBeLessThan(3000);
      expect((await fetch(`${app.url}/readyz`)).status).toBe(503);
      const batch = await app.produce('/v1/messages', { messages: [{ userId: 'patient', data: 1 }] });
      expect(batch.status).toBe(503);
      const acks = await app.ack(token, ['1-0']);
      expect(acks.status).toBe(503);

      // The stream stays open through the outage: heartbeats keep coming.
      const pings = sse.comments.length;
      await sleep(1500);
      expect(sse.comments.length).toBeGreaterThan(pings);

      await redis.restart();
      await waitFor(async () => (await fetch(`${app.url}/readyz`)).status === 200, 10_000);
      const after = await app.enqueue('patient', 'after');
      const events = await sse.waitFor(2, 10_000);
      expect(events.map((e) => e.id)).toEqual([before, after]);
      expect(JSON.parse(events[1]!.data)).toBe('after');
      sse.close();
    } finally {
      await app.close();
    }
  });

  it('ends streams on SIGTERM and exits cleanly', async () => {
    const server = await spawnServer({ REDIS_URL: redis.url, KEY_PREFIX: 'term' });
    const sse = await openSse(`${server.url}/v1/stream?token=${await tokenAt(server.url, 'leaver')}`);
    expect(sse.status).toBe(200);
    expect(await server.kill('SIGTERM')).toBe(0);
    await sse.ended;
    expect(server.output()).toMatch(/"msg":"stopped"/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
