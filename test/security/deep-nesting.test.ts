import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { waitUntil } from '../helpers/wait-until.js';

// JSON.parse in V8 walks deep input without recursion; JSON.stringify recurses, and threw a
// RangeError (a 500) on 10,000 levels.
let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url);
  // A room with a member, so a room message reaches its serialisation.
  expect((await app.call('PUT', '/v1/rooms/deep/members/member')).status).toBe(204);
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

/** Arrays nested `depth` levels: `[[[...]]]`, 2 bytes a level. */
const arrays = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
/** Objects nested `depth` levels: `{"a":{"a":...1}}`. */
const objects = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

/** Each route taking a message's data, with a body holding `data` (raw JSON text). */
const routes: Array<[string, string, string, (data: string) => string]> = [
  ['enqueue', 'POST', '/v1/users/deep/messages', (d) => `{"data":${d}}`],
  ['scheduled enqueue', 'POST', '/v1/users/deep/messages', (d) => `{"delayMs":60000,"data":${d}}`],
  ['batch', 'POST', '/v1/messages', (d) => `{"messages":[{"userId":"deep","data":1},{"userId":"deep","data":${d}}]}`],
  ['room message', 'POST', '/v1/rooms/deep/messages', (d) => `{"data":${d}}`],
  ['recurring schedule', 'PUT', '/v1/users/deep/schedules/nested', (d) => `{"every":60000,"data":${d}}`],
];

async function send(method: string, path: string, body: string): Promise<Response> {
  return fetch(app.url + path, {
    method,
    headers: { authorization: `Bearer ${app.config.API_KEY}`, 'content-type': 'application/json' },
    body,
  });
}

describe('deeply nested data', () => {
  for (const [name, method, path, body] of routes) {
    for (const [shape, text] of [
      ['10,000 levels of arrays (20 KB)', arrays(10_000)],
      ['10,000 levels of objects', objects(10_000)],
      ['65 levels', arrays(65)],
    ] as const) {
      it(`${name}: refuses ${shape} with 400 naming the limit, and stores nothing`, async () => {
        // The room message an earlier test accepted fans out in the background: let it finish first.
        await waitUntil(async () => {
          const c = await app.queue('fanout').getJobCounts('active', 'waiting', 'prioritized');
          return (c.active ?? 0) + (c.waiting ?? 0) + (c.prioritized ?? 0) === 0;
        }, 'no fan-out under way');
        const before = await redisSnapshot(redis.client(), 'pb');
        const res = await send(method, path, body(text));
        expect(res.status).toBe(400);
        const { error } = (await res.json()) as { error: { code: string; message: string } };
        expect(error.code).toBe('PB_ERR_VALIDATION');
        expect(error.message).toMatch(/64 levels/);
        expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'pb'))).toEqual([]);
      });
    }

    it(`${name}: accepts data nested 64 levels`, async () => {
      const res = await send(method, path, body(arrays(64)));
      expect(res.status).toBeGreaterThanOrEqual(200);
      expect(res.status).toBeLessThan(300);
    });
  }

  it('refuses a deep body on any JSON route before parsing it (acks)', async () => {
    const token = await app.token('deep');
    const res = await fetch(`${app.url}/v1/acks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: `{"ids":${arrays(100_000)}}`,
    });
    expect(res.status).toBe(400);
    expect((await res.json()) as unknown).toMatchObject({
      error: { code: 'PB_ERR_VALIDATION', message: expect.stringMatching(/request body nests deeper than 64 levels/) },
    });
  });

  it('does not count brackets inside strings', async () => {
    const res = await send('POST', '/v1/users/deep/messages', JSON.stringify({ data: '['.repeat(5000) + '{'.repeat(5000) }));
    expect(res.status).toBe(201);
  });
});
