import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failUntilDead } from '../helpers/dead-letters.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

// One convention for times in JSON responses: instants are ISO 8601 strings in UTC with ms
// (`…At`, `next`, `until`, the stats' `at`, `nodes[].at` and `series[].t`), durations are
// integer ms named `…Ms`. Every response below is walked, so a new field in epoch ms fails here.
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 300, MAX_DELIVERIES: 1, JOB_LOCK_MS: 1000 });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

/** Every (path, value) of a JSON document whose key names a time or a duration. */
function times(value: unknown, path = '$'): Array<{ path: string; key: string; value: unknown }> {
  if (Array.isArray(value)) return value.flatMap((v, i) => times(v, `${path}[${i}]`));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, v]) => {
    const here = `${path}.${key}`;
    const own = /(At|^at|^t|^next|^until|Ms)$/.test(key) && (typeof v !== 'object' || v === null) ? [{ path: here, key, value: v }] : [];
    return [...own, ...times(v, here)];
  });
}

async function body(res: Response): Promise<unknown> {
  expect(res.status).toBeLessThan(300);
  return res.json();
}

/** /admin/stats once the rate sampler has taken two samples (one chart point). */
const statsWithSeries = (): Promise<unknown> =>
  eventually(
    async () => (await body(await app.admin('/admin/stats'))) as { series: unknown[] },
    (stats) => stats.series.length > 0,
    'a chart point in /admin/stats',
    { intervalMs: 200 },
  );

describe('times in the API', () => {
  it('are ISO 8601 strings for instants and integer ms for durations, in every response', async () => {
    await app.enqueue('timed', { n: 1 });
    await failUntilDead(app, 'timed', 1);
    await app.enqueue('timed', { n: 2 });
    await app.call('PUT', '/v1/rooms/clock-room/members/timed');
    const documents = [
      await body(await app.produce('/v1/users/timed/messages', { data: 3 })),
      await body(await app.produce('/v1/users/timed/messages', { data: 'later', delayMs: 60_000 })),
      await body(await app.produce('/v1/messages', { messages: [{ userId: 'timed', data: 4 }] })),
      await body(await app.produce('/v1/tokens', { userId: 'timed' })),
      await body(await app.call('PUT', '/v1/users/timed/schedules/s', { every: 60_000, data: 1, until: Date.now() + 3_600_000 })),
      await body(await app.call('GET', '/v1/users/timed/schedules')),
      await body(await app.produce('/v1/rooms/clock-room/messages', { data: 'hi' })),
      await body(await app.admin('/admin/queues?sort=age')),
      await body(await app.admin('/admin/queues/timed')),
      await statsWithSeries(),
      await body(await app.admin('/admin/rooms/clock-room')),
    ];
    const found = documents.flatMap((d) => times(d));
    const keys = new Set(found.map((f) => f.path.replace(/\[\d+\]/g, '[]')));
    // The fields this convention is about are really in these responses.
    for (const path of ['$.enqueuedAt', '$.deliverAt', '$.expiresAt', '$.next', '$.until', '$.oldestWaiting[].enqueuedAt', '$.deadLetters[].deadAt', '$.at', '$.nodes[].at', '$.series[].t', '$.fanouts[].sentAt']) {
      expect(keys).toContain(path);
    }
    for (const f of found) {
      if (f.key.endsWith('Ms')) expect(Number.isInteger(f.value) || f.value === null, f.path).toBe(true);
      else expect(f.value === null || (typeof f.value === 'string' && ISO.test(f.value)), `${f.path} = ${JSON.stringify(f.value)}`).toBe(true);
    }
  });
});
