import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { LEVEL, startLoggedApp, type LogLine } from '../helpers/start-logged-app.js';
import type { TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitUntil } from '../helpers/wait-until.js';

// What a 503 tells the producer, with a real TCP proxy between postbox and Redis:
// PB_ERR_REDIS_UNAVAILABLE: nothing was sent, nothing stored; PB_ERR_OUTCOME_UNKNOWN: sent,
// no reply; it may have been carried out (a paused Redis runs it when it resumes).
let redis: TestRedis;
let proxy: TcpProxy;
let limitedProxy: TcpProxy;
type LoggedApp = TestApp & { logs: () => LogLine[] };
/** No rate limits: the enqueue is the first command a request sends. */
let app: LoggedApp;
/** Default rate limits: the limiter's call comes first. */
let limited: LoggedApp;

const TIMEOUT_MS = 400;

beforeAll(async () => {
  redis = await startRedis();
  [proxy, limitedProxy] = await Promise.all([startTcpProxy({ port: redis.port }), startTcpProxy({ port: redis.port })]);
  [app, limited] = await Promise.all([
    startLoggedApp(proxy.url, { REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, RATE_LIMIT_KEY_PER_SECOND: 0, RATE_LIMIT_USER_PER_SECOND: 0 }),
    startLoggedApp(limitedProxy.url, { KEY_PREFIX: 'lim', REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS }),
  ]);
});
afterEach(async () => {
  for (const p of [proxy, limitedProxy]) {
    p.refuse(false);
    p.resume();
  }
  await Promise.all([ready(app), ready(limited)]);
});
afterAll(async () => {
  await Promise.allSettled([app?.close(), limited?.close()]);
  await Promise.allSettled([proxy?.close(), limitedProxy?.close()]);
  await redis?.stop();
});

async function ready(node: TestApp): Promise<void> {
  await waitUntil(async () => (await fetch(`${node.url}/readyz`)).status === 200, 'the node is ready');
}


interface Answer {
  status: number;
  retryAfter: string | null;
  code?: string;
  id?: string;
  details?: { ids: Array<string | null>; errors?: Array<{ index: number; code: string }> };
}

async function enqueue(node: TestApp, userId: string, data: unknown, key?: string): Promise<Answer> {
  const res = await node.produce(`/v1/users/${userId}/messages`, { data, ...(key === undefined ? {} : { key }) });
  const body = (await res.json()) as { id?: string; error?: { code: string; details?: Answer['details'] } };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), code: body.error?.code, id: body.id, details: body.error?.details };
}

const stored = async (prefix: string, userId: string) =>
  (await redis.client().xrange(`${prefix}:{${userId}}:m`, '-', '+')).map(([id]) => id);

describe('what a 503 means', () => {
  it('answers PB_ERR_OUTCOME_UNKNOWN when Redis is stalled, and the enqueue is carried out when it resumes', async () => {
    proxy.stall();
    const answer = await enqueue(app, 'stalled', 'sent into a stall', 'stall-1');
    expect(answer).toMatchObject({ status: 503, code: 'PB_ERR_OUTCOME_UNKNOWN', retryAfter: '1' });
    expect(await stored('pb', 'stalled')).toEqual([]);
    proxy.resume();
    // The command waited in the network, as in a paused Redis: it runs now.
    await waitUntil(async () => (await stored('pb', 'stalled')).length === 1, 'the enqueue ran');
    // Retrying with the same key, as the 503 says, gives the message that was stored: once.
    await ready(app);
    const retry = await enqueue(app, 'stalled', 'sent into a stall', 'stall-1');
    expect(retry).toMatchObject({ status: 200, id: (await stored('pb', 'stalled'))[0] });
    expect(await stored('pb', 'stalled')).toHaveLength(1);
  });

  it('answers PB_ERR_OUTCOME_UNKNOWN when the connection drops after the command was sent (and Redis ran it)', async () => {
    proxy.stall('down');
    const pending = enqueue(app, 'dropped', 'its reply is lost', 'drop-1');
    await waitUntil(async () => (await stored('pb', 'dropped')).length === 1, 'Redis ran the enqueue');
    proxy.drop();
    expect(await pending).toMatchObject({ status: 503, code: 'PB_ERR_OUTCOME_UNKNOWN' });
    proxy.resume();
    await ready(app);
    const retry = await enqueue(app, 'dropped', 'its reply is lost', 'drop-1');
    expect(retry).toMatchObject({ status: 200, id: (await stored('pb', 'dropped'))[0] });
  });

  it('answers PB_ERR_REDIS_UNAVAILABLE at once while the connection is down, and stores nothing', async () => {
    await enqueue(app, 'refused', 'before');
    proxy.refuse(true);
    proxy.drop();
    await waitUntil(async () => (await fetch(`${app.url}/readyz`)).status === 503, 'the node sees Redis down');
    const before = await redisSnapshot(redis.client(), 'pb');
    const single = await enqueue(app, 'refused', 'during', 'refused-1');
    expect(single).toMatchObject({ status: 503, code: 'PB_ERR_REDIS_UNAVAILABLE', retryAfter: '1' });
    const batch = await app.produce('/v1/messages', {
      messages: [
        { userId: 'refused', data: 1 },
        { userId: 'other', data: 2, delayMs: 60_000 },
      ],
    });
    expect(batch.status).toBe(503);
    expect(await batch.json()).toMatchObject({
      error: {
        code: 'PB_ERR_REDIS_UNAVAILABLE',
        details: {
          ids: [null, null],
          errors: [
            { index: 0, userId: 'refused', code: 'PB_ERR_REDIS_UNAVAILABLE' },
            { index: 1, userId: 'other', code: 'PB_ERR_REDIS_UNAVAILABLE' },
          ],
        },
      },
    });
    for (const [method, path, body] of [
      ['PUT', '/v1/rooms/r/members/refused', undefined],
      ['PUT', '/v1/users/refused/schedules/s', { every: 60_000, data: 1 }],
      ['POST', '/v1/rooms/r/messages', { data: 1 }],
    ] as const) {
      const res = await app.call(method, path, body);
      expect(`${method} ${path} ${res.status} ${((await res.json()) as { error: { code: string } }).error.code}`).toBe(
        `${method} ${path} 503 PB_ERR_REDIS_UNAVAILABLE`,
      );
    }
    const ack = await app.ack(await app.token('refused'), ['1-0']);
    expect(ack.status).toBe(503);
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'pb'))).toEqual([]);
    proxy.refuse(false);
    await ready(app);
    // Not stored, so the same key now creates it.
    expect(await enqueue(app, 'refused', 'during', 'refused-1')).toMatchObject({ status: 201 });
  });

  it('reports per message of a batch which were stored and which are unknown when the replies stop midway', async () => {
    const first = await enqueue(app, 'midway', 0);
    expect(first.status).toBe(201);
    // The length check's reply and about three enqueue replies get through; then nothing.
    proxy.stall('down', 130);
    const res = await app.produce('/v1/messages', { messages: Array.from({ length: 8 }, (_, i) => ({ userId: 'midway', data: i + 1 })) });
    const body = (await res.json()) as { error: { code: string; details: NonNullable<Answer['details']> } };
    expect(res.status).toBe(503);
    expect(body.error.code).toBe('PB_ERR_OUTCOME_UNKNOWN');
    const { ids, errors = [] } = body.error.details;
    const known = ids.filter((id): id is string => id !== null);
    expect(known.length).toBeGreaterThanOrEqual(1);
    expect(known.length).toBeLessThan(8);
    // Stored ones first (replies come in order), then the unknown ones, each listed.
    expect(ids.slice(0, known.length)).toEqual(known);
    expect(errors.map((e) => [e.index, e.code])).toEqual(
      Array.from({ length: 8 - known.length }, (_, i) => [known.length + i, 'PB_ERR_OUTCOME_UNKNOWN']),
    );
    const now = await stored('pb', 'midway');
    for (const id of known) expect(now).toContain(id);
    proxy.resume();
    // Redis had run all of them: "unknown" was the truth, not "refused".
    await waitUntil(async () => (await stored('pb', 'midway')).length === 9, 'all eight are stored');
  });

  it('with rate limits on, a stalled limiter refuses the request before the enqueue is sent: nothing is stored', async () => {
    limitedProxy.stall();
    const answer = await enqueue(limited, 'gated', 'never sent', 'gated-1');
    expect(answer).toMatchObject({ status: 503, code: 'PB_ERR_REDIS_UNAVAILABLE' });
    limitedProxy.resume();
    await ready(limited);
    // Whatever was waiting in the network has run by now: a later enqueue's reply came after it.
    expect(await enqueue(limited, 'gated', 'after', 'gated-2')).toMatchObject({ status: 201 });
    expect(await stored('lim', 'gated')).toHaveLength(1);
    // With the connection down, the limiter refuses at once.
    limitedProxy.refuse(true);
    limitedProxy.drop();
    await waitUntil(async () => (await fetch(`${limited.url}/readyz`)).status === 503, 'the node sees Redis down');
    expect(await enqueue(limited, 'gated', 'down')).toMatchObject({ status: 503, code: 'PB_ERR_REDIS_UNAVAILABLE' });
  });
});

describe('logging an outage', () => {
  it('logs one error when requests start failing and one line when Redis answers again, and counts each in /metrics', async () => {
    // An outage an earlier test caused ends only when a probe reaches Redis again (a second after
    // it began, or later on a loaded machine): until then a new failure starts no new outage.
    const lines = (msg: string) => app.logs().filter((l) => l.msg === msg).length;
    await waitUntil(
      () => lines('storage available again') === lines('storage unavailable: requests answer 503 until Redis answers again'),
      'no outage is under way',
    );
    const mark = app.logs().length;
    proxy.refuse(true);
    proxy.drop();
    await waitUntil(async () => (await fetch(`${app.url}/readyz`)).status === 503, 'the node sees Redis down');
    for (let i = 0; i < 30; i += 1) expect((await enqueue(app, 'outage', i)).status).toBe(503);
    for (let i = 0; i < 10; i += 1) expect((await app.admin('/admin/queues/outage')).status).toBe(503);
    const during = app.logs().slice(mark);
    const errors = during.filter((l) => l.level >= LEVEL.error && l.msg !== 'redis connection error');
    expect(errors.map((l) => l.msg)).toEqual(['storage unavailable: requests answer 503 until Redis answers again']);
    proxy.refuse(false);
    const ended = () => app.logs().slice(mark).find((l) => l.msg === 'storage available again');
    await waitUntil(() => ended() !== undefined, 'the end of the outage is logged');
    const end = ended();
    expect(end).toMatchObject({ level: LEVEL.info, failedRequests: { refused: 40 } });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(Number(/postbox_redis_errors_total\{kind="refused"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(40);
  });

  it('still logs a real bug each time, with its stack, and without the data of the failed command', async () => {
    // A key of the wrong type where the user's mailbox should be: the script fails, Redis is fine.
    await redis.client().set('pb:{broken}:m', 'not a stream');
    const mark = app.logs().length;
    for (let i = 0; i < 3; i += 1) {
      const res = await app.produce('/v1/users/broken/messages', { data: { card: `4111-1111-1111-111${i}` } });
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe('internal error');
    }
    const bugs = app.logs().slice(mark).filter((l) => l.level === LEVEL.error);
    expect(bugs).toHaveLength(3);
    for (const bug of bugs) {
      expect(bug.err?.stack).toMatch(/WRONGTYPE/);
      // ioredis attaches the command's arguments to its errors: the log keeps their number only.
      expect(bug.err).toMatchObject({ command: { name: expect.stringMatching(/^eval/), args: expect.any(Number) } });
      expect(JSON.stringify(bug)).not.toMatch(/4111-1111/);
    }
  });
});
