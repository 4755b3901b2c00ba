import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse } from '../helpers/read-sse.js';
import { startApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('graceful shutdown', () => {
  it('tells every open stream to come back soon (postbox.restart, no id, a delay under 1 s) before ending it', async () => {
    const app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50 });
    const streams = await Promise.all(
      ['ann', 'ann', 'bob'].map(async (user) => openSse(app.streamUrl(await app.token(user)))),
    );
    const id = await app.enqueue('bob', { n: 1 });
    await streams[2]!.waitFor(1);
    await app.close();
    await Promise.all(streams.map((s) => s.ended));
    for (const sse of streams) {
      const last = sse.events.at(-1);
      expect(last).toMatchObject({ event: 'postbox.restart', id: undefined });
      const { reconnectMs } = JSON.parse(last!.data) as { reconnectMs: number };
      expect(Number.isInteger(reconnectMs) && reconnectMs >= 0 && reconnectMs < 1000).toBe(true);
    }
    // The message before it keeps its id; the notice moves no browser's Last-Event-ID.
    expect(streams[2]!.events.map((e) => e.id)).toEqual([id, undefined]);
  });
});
