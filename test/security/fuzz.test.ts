import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../helpers/read-sse.js';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// Property: whatever a client sends to any route (path segments, query, headers, body), the
// answer comes (no hang), is never a 5xx, and a refused request (4xx) leaves Redis as it was.
let redis: TestRedis;
let app: TestApp;
let token: string;

/** Runs of the property (FUZZ_RUNS; the soak runs many more); fast-check prints the seed of a failure, to replay it. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

beforeAll(async () => {
  redis = await startRedis();
  // Housekeeping only once (at start), so nothing but the requests changes what is stored.
  app = await startApp(redis.url, { HOUSEKEEPING_INTERVAL_MS: 86_400_000 });
  await app.enqueue('alice', { hello: 'world' });
  await app.enqueue('alice', 2, { key: 'k1' });
  expect((await app.call('PUT', '/v1/rooms/lobby/members/alice')).status).toBe(204);
  expect((await app.call('PUT', '/v1/users/alice/schedules/daily', { cron: '0 0 1 1 *', data: 1 })).status).toBe(201);
  token = await app.token('alice');
  await quiet();
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

/** Until no job is waiting or running (a room message's fan-out), so the next snapshot is stable. */
async function quiet(): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const counts = await Promise.all(app.postbox.queues.map((q) => q.getJobCounts('waiting', 'active', 'prioritized')));
    if (counts.every((c) => (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) === 0)) return;
    if (Date.now() > deadline) throw new Error(`jobs still running: ${JSON.stringify(counts)}`);
    await sleep(20);
  }
}

type Who = 'producer' | 'admin' | 'stream' | 'none';
const ROUTES: Array<[string, string, Who]> = [
  ['GET', '/healthz', 'none'],
  ['GET', '/readyz', 'none'],
  ['POST', '/v1/users/:a/messages', 'producer'],
  ['POST', '/v1/messages', 'producer'],
  ['POST', '/v1/tokens', 'producer'],
  ['DELETE', '/v1/users/:a/scheduled/:b', 'producer'],
  ['PUT', '/v1/users/:a/schedules/:b', 'producer'],
  ['GET', '/v1/users/:a/schedules', 'producer'],
  ['DELETE', '/v1/users/:a/schedules/:b', 'producer'],
  ['PUT', '/v1/rooms/:a/members/:b', 'producer'],
  ['POST', '/v1/rooms/:a/members', 'producer'],
  ['GET', '/v1/rooms/:a/members', 'producer'],
  ['DELETE', '/v1/rooms/:a/members/:b', 'producer'],
  ['POST', '/v1/rooms/:a/messages', 'producer'],
  ['HEAD', '/v1/stream', 'stream'],
  ['POST', '/v1/acks', 'stream'],
  ['POST', '/v1/nacks', 'stream'],
  ['GET', '/admin/queues', 'admin'],
  ['GET', '/admin/queues/:a', 'admin'],
  ['DELETE', '/admin/queues/:a', 'admin'],
  ['POST', '/admin/queues/:a/dead/retry', 'admin'],
  ['DELETE', '/admin/queues/:a/messages/:b', 'admin'],
  ['GET', '/admin/stats', 'admin'],
  ['GET', '/admin/rooms', 'admin'],
  ['GET', '/admin/rooms/:a', 'admin'],
  ['GET', '/admin/assets/:a', 'none'],
  ['GET', '/client/:a', 'none'],
  ['GET', '/admin/jobs/api/queues/:a', 'admin'],
  ['GET', '/:a/:b', 'none'],
];

const PROTO = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'];

/** A path segment: valid names, prototype names, dot segments, broken percent-encoding, anything. */
const segment = fc.oneof(
  fc.constantFrom('alice', 'lobby', 'daily', 'bob', '1-0', '99999999999999-1', 's-abc'),
  fc.constantFrom(...PROTO).map(encodeURIComponent),
  fc.constantFrom('..', '.', '%2e%2e', '%2E', '%00', '%', '%zz', '%E0%A4%A', '%ff%fe', 'a%2Fb', '%5C', '%0d%0a', '{x}', '*'),
  fc.string({ unit: 'binary', maxLength: 40 }).map(encodeURIComponent),
  fc.string({ minLength: 129, maxLength: 400 }).map(encodeURIComponent),
);

/** Printable ASCII only: fetch itself refuses anything else in a header. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 });

const query = fc.array(
  fc.tuple(
    fc.oneof(fc.constantFrom('limit', 'cursor', 'sort', 'token', 'lastEventId', ...PROTO), fc.string({ maxLength: 10 })),
    fc.oneof(fc.constantFrom('0', '-1', '1001', '50', 'NaN', '1e9', 'backlog', 'age', '', '__proto__'), fc.string({ unit: 'binary', maxLength: 30 })),
  ),
  { maxLength: 4 },
);

/** A value that may or may not fit a field: what a confused or hostile client would send. */
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom('postbox.acked', 'a\nb', '', 'x'.repeat(300), 0, -1, 1.5, 1e300, null, true, [], {}),
  // Valid-looking times far in the future: nothing scheduled falls due during the test.
  fc.integer({ min: 86_400_000, max: 300 * 86_400_000 }),
  fc.constantFrom('0 0 1 1 *', '* * * * * *', 'not cron', '@hourly'),
);

const FIELDS = ['data', 'event', 'key', 'ttlMs', 'delayMs', 'deliverAt', 'userId', 'userIds', 'ids', 'messages', 'every', 'cron', 'tz', 'exceptUserId', 'ttlSeconds', ...PROTO];

/** A body: mostly objects of the routes' field names, sometimes anything at all or broken JSON. */
const body = fc.oneof(
  fc.dictionary(fc.constantFrom(...FIELDS), fieldValue, { maxKeys: 5 }).map((o) => JSON.stringify(o)),
  fc
    .array(fc.dictionary(fc.constantFrom(...FIELDS), fieldValue, { maxKeys: 4 }), { maxLength: 5 })
    .map((messages) => JSON.stringify({ messages })),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.constantFrom('', '{', '{"data":', 'null', '[]', '"x"', '{"data":1}{"data":2}', '\u0000', '{"__proto__":{"x":1}}', '['.repeat(200)),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

const auth = fc.constantFrom('own', 'producer', 'admin', 'stream', 'garbage', 'none', 'basic');

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/vnd.api+json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '',
  'application/json; charset=nope',
);

const request = fc.record({
  route: fc.constantFrom(...ROUTES),
  a: segment,
  b: segment,
  query,
  body,
  auth,
  contentType,
  encoding: fc.constantFrom(undefined, 'identity', 'gzip', 'deflate', 'br', 'x-unknown'),
  extra: fc.array(fc.tuple(fc.constantFrom('last-event-id', 'origin', 'accept', 'x-forwarded-for', 'cookie', 'range'), headerText), {
    maxLength: 3,
  }),
});

function credentials(kind: string, who: Who): string | undefined {
  switch (kind === 'own' ? who : kind) {
    case 'producer':
      return `Bearer ${app.config.API_KEY}`;
    case 'admin':
      return `Bearer ${app.config.ADMIN_KEY}`;
    case 'stream':
      return `Bearer ${token}`;
    case 'garbage':
      return 'Bearer x.y.z';
    case 'basic':
      return 'Basic YWxpY2U6cGFzcw==';
    default:
      return undefined;
  }
}

describe('fuzzing every route', () => {
  it('never answers 5xx, never hangs, and a refused request changes nothing', async () => {
    let before = await redisSnapshot(redis.client(), 'pb');
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const [method, template, who] = r.route;
        const path = template.replace(':a', r.a).replace(':b', r.b);
        const search = r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const headers: Record<string, string> = Object.fromEntries(r.extra);
        const authorization = credentials(r.auth, who);
        if (authorization !== undefined) headers.authorization = authorization;
        const sendsBody = method !== 'GET' && method !== 'HEAD';
        if (sendsBody && r.contentType !== '') headers['content-type'] = r.contentType;
        if (sendsBody && r.encoding !== undefined) headers['content-encoding'] = r.encoding;
        let status: number;
        try {
          const res = await fetch(`${app.url}${path}${search ? `?${search}` : ''}`, {
            method,
            headers,
            ...(sendsBody ? { body: r.body } : {}),
            signal: AbortSignal.timeout(10_000),
          });
          status = res.status;
          await res.arrayBuffer();
        } catch (err) {
          // fetch refuses some URLs itself (never sent): not the server's doing.
          if (err instanceof TypeError && /Invalid URL|Failed to parse URL/.test(String(err.message))) return;
          throw new Error(`${method} ${path}: no answer within 10 s (${String(err)})`, { cause: err });
        }
        seen.set(status, (seen.get(status) ?? 0) + 1);
        expect(`${method} ${path} ${status}`).not.toMatch(/ 5\d\d$/);
        if (status >= 400) {
          const after = await redisSnapshot(redis.client(), 'pb');
          expect(`${method} ${path} ${status}: ${snapshotDiff(before, after).join(', ')}`).toBe(`${method} ${path} ${status}: `);
        } else {
          await quiet();
          before = await redisSnapshot(redis.client(), 'pb');
        }
      }),
      { numRuns: RUNS },
    );
    // The property saw refusals and successes both, or it proved little.
    const statuses = [...seen.keys()];
    expect(statuses.some((s) => s >= 400)).toBe(true);
    expect(statuses.some((s) => s < 300)).toBe(true);
  });
});
