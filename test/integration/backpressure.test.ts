import { request } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse, sleep } from '../helpers/read-sse.js';

let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, {
    WRITE_STALL_MS: 1000,
    MESSAGE_MAX_BYTES: 1024 * 1024,
    BODY_MAX_BYTES: 2 * 1024 * 1024,
    MAX_INFLIGHT: 20,
    ACK_TIMEOUT_MS: 60_000,
    DRAIN_INTERVAL_MS: 50,
  });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

it('closes a stream whose reader stops reading, and redelivers its messages on the next connection', async () => {
  const token = await app.token('slow-reader');
  // A reader that connects and never reads: the socket buffers fill up.
  const stalled = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    const req = request(`${app.url}/v1/stream?token=${token}`, (res) => {
      res.pause();
      resolve(res);
    });
    req.on('error', reject);
    req.end();
  });
  const big = 'x'.repeat(900 * 1024);
  const ids: string[] = [];
  for (let i = 0; i < 20; i += 1) ids.push(await app.enqueue('slow-reader', { i, big }));

  // 18 MB cannot sit in loopback socket buffers: the server gives up after WRITE_STALL_MS.
  // (The paused client does not read, so it cannot notice the close itself; ask the server.)
  const deadline = Date.now() + 15_000;
  while (app.node.hub.count('slow-reader') > 0 && Date.now() < deadline) await sleep(100);
  stalled.destroy();
  const metrics = await (await fetch(`${app.url}/metrics`)).text();
  expect(metrics).toMatch(/postbox_streams_closed_total\{reason="write stalled"\} 1/);
  expect(app.node.hub.count('slow-reader')).toBe(0);

  // A healthy reader gets every one of them, in order, with the same ids.
  const sse = await openSse(`${app.url}/v1/stream?token=${token}`);
  const events = await sse.waitFor(20, 20_000);
  expect(events.map((e) => e.id)).toEqual(ids);
  sse.close();
});
