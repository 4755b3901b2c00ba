import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../helpers/raw-http.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
/** Per-user limit 0.5/s, burst 4; no key limit. Slow refills, so no test depends on how fast requests go. */
let perUser: TestApp;
/** A second node of `perUser` (same Redis, same prefix): the buckets are shared. */
let perUserTwin: TestApp;
/** Per-key limit 0.01/s, burst 10; no user limit. */
let perKey: TestApp;
/** 1/s per user, burst 1000: a token taken stays taken for the whole test. */
let slow: TestApp;
/** Two streams per node, three opens per address per minute. */
let streams: TestApp;
/** Behind one proxy: the address is the last X-Forwarded-For entry. */
let proxied: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const userLimit = { RATE_LIMIT_USER_PER_SECOND: 0.5, RATE_LIMIT_USER_BURST: 4, RATE_LIMIT_KEY_PER_SECOND: 0 };
  [perUser, perUserTwin, perKey, slow, streams, proxied] = await Promise.all([
    startApp(redis.url, { KEY_PREFIX: 'user', ...userLimit }),
    startApp(redis.url, { KEY_PREFIX: 'user', ...userLimit }),
    startApp(redis.url, { KEY_PREFIX: 'key', RATE_LIMIT_KEY_PER_SECOND: 0.01, RATE_LIMIT_KEY_BURST: 10, RATE_LIMIT_USER_PER_SECOND: 0 }),
    startApp(redis.url, { KEY_PREFIX: 'slow', RATE_LIMIT_USER_PER_SECOND: 1, RATE_LIMIT_USER_BURST: 1000 }),
    startApp(redis.url, { KEY_PREFIX: 'streams', MAX_STREAMS_PER_NODE: 2, STREAM_OPENS_PER_ADDRESS: 3, STREAM_OPENS_WINDOW_MS: 60_000 }),
    startApp(redis.url, { KEY_PREFIX: 'proxied', STREAM_OPENS_PER_ADDRESS: 2, STREAM_OPENS_WINDOW_MS: 60_000, TRUST_PROXY_HOPS: 1 }),
  ]);
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled([perUser, perUserTwin, perKey, slow, streams, proxied].map((a) => a?.close()));
  await redis?.stop();
});

interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

async function refusal(res: Response): Promise<{ status: number; code: string; retryAfter: number; body: ErrorBody }> {
  const body = (await res.json()) as ErrorBody;
  return { status: res.status, code: body.error.code, retryAfter: Number(res.headers.get('retry-after')), body };
}

const metric = async (app: TestApp, name: string) => {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.split(' ')[0] === name);
  return Number(line?.split(' ')[1] ?? NaN);
};

describe('producer rate limits (token buckets in Redis)', () => {
  it('refuses the message past a user\'s burst with 429 PB_ERR_USER_RATE_LIMITED and Retry-After, storing nothing', async () => {
    const four = (userId: string) => ({ messages: [0, 1, 2, 3].map((i) => ({ userId, data: i })) });
    expect((await perUser.produce('/v1/messages', four('chatty'))).status).toBe(201);
    const before = await redisSnapshot(redis.client(), 'user');
    const res = await perUser.produce('/v1/users/chatty/messages', { data: 'one too many' });
    const r = await refusal(res);
    expect(r).toMatchObject({ status: 429, code: 'PB_ERR_USER_RATE_LIMITED' });
    expect(r.retryAfter).toBeGreaterThanOrEqual(1);
    expect(r.body.error.details).toEqual([{ limit: 'user', userId: 'chatty' }]);
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'user'))).toEqual([]);
    // Another user has a bucket of their own.
    await perUser.enqueue('quiet', 'hello');
    // After the wait it names, the user may send again (the bucket refills at 0.5/s).
    await sleep(r.retryAfter * 1000);
    await perUser.enqueue('chatty', 'after the wait');
    expect(await metric(perUser, 'postbox_rate_limited_total{limit="user"}')).toBeGreaterThanOrEqual(1);
  });

  it('shares the buckets between nodes', async () => {
    const four = { messages: [0, 1, 2, 3].map((i) => ({ userId: 'roaming', data: i })) };
    expect((await perUser.produce('/v1/messages', four)).status).toBe(201);
    const res = await perUserTwin.produce('/v1/users/roaming/messages', { data: 'on the other node' });
    expect((await refusal(res)).code).toBe('PB_ERR_USER_RATE_LIMITED');
  });

  it('takes one token per message of a batch, refuses a whole batch that does not fit, and gives back what it took', async () => {
    const fits = await perUser.produce('/v1/messages', { messages: [1, 2, 3].map((i) => ({ userId: 'batcher', data: i })) });
    expect(fits.status).toBe(201);
    const before = await redisSnapshot(redis.client(), 'user');
    const over = await perUser.produce('/v1/messages', { messages: [1, 2, 3].map((i) => ({ userId: 'batcher', data: i })) });
    expect((await refusal(over)).code).toBe('PB_ERR_USER_RATE_LIMITED');
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'user'))).toEqual([]);
    // More messages for one user than the bucket can ever hold: no wait helps, so not a 429.
    const never = await perUser.produce('/v1/messages', { messages: [1, 2, 3, 4, 5].map((i) => ({ userId: 'x', data: i })) });
    expect(never.status).toBe(400);
    expect((await refusal(never)).body.error.message).toMatch(/RATE_LIMIT_USER_BURST is 4/);

    // At 1/s, 500 tokens taken and not given back would still be missing minutes later.
    const drained = await slow.produce('/v1/messages', { messages: Array.from({ length: 1000 }, (_, i) => ({ userId: 'full', data: i })) });
    expect(drained.status).toBe(201);
    const mixed = await slow.produce('/v1/messages', {
      messages: [{ userId: 'full', data: 0 }, ...Array.from({ length: 500 }, (_, i) => ({ userId: 'bystander', data: i }))],
    });
    expect((await refusal(mixed)).code).toBe('PB_ERR_USER_RATE_LIMITED');
    const check = redis.client();
    const deadline = Date.now() + 10_000;
    let tokens = 0;
    while (Date.now() < deadline) {
      tokens = Number(await check.hget('slow:rl:user:{bystander}', 't'));
      if (tokens >= 999) break;
      await sleep(50);
    }
    expect(tokens).toBeGreaterThanOrEqual(999);
  });

  it('limits the API key on every producer route, a batch by its messages', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 10; i += 1) statuses.push((await perKey.produce('/v1/tokens', { userId: `t${i}` })).status);
    expect(statuses).toEqual(Array<number>(10).fill(201));
    const res = await perKey.produce('/v1/users/u/messages', { data: 1 });
    const r = await refusal(res);
    expect(r).toMatchObject({ status: 429, code: 'PB_ERR_KEY_RATE_LIMITED' });
    expect(r.retryAfter).toBeGreaterThanOrEqual(1);
    for (const [method, path, body] of [
      ['PUT', '/v1/rooms/r/members/u', undefined],
      ['GET', '/v1/rooms/r/members', undefined],
      ['PUT', '/v1/users/u/schedules/s', { every: 60_000, data: 1 }],
      ['POST', '/v1/messages', { messages: [{ userId: 'u', data: 1 }] }],
    ] as const) {
      expect(`${method} ${path} ${(await perKey.call(method, path, body)).status}`).toBe(`${method} ${path} 429`);
    }
    // The admin and the subscribers are not producers.
    expect((await perKey.admin('/admin/queues')).status).toBe(200);
    const big = await perKey.produce('/v1/messages', { messages: Array.from({ length: 11 }, () => ({ userId: 'u', data: 1 })) });
    expect((await refusal(big)).body.error.message).toMatch(/RATE_LIMIT_KEY_BURST is 10/);
    expect(await metric(perKey, 'postbox_rate_limited_total{limit="key"}')).toBeGreaterThanOrEqual(5);
  });
});

describe('stream limits of a node', () => {
  it('refuses a stream past MAX_STREAMS_PER_NODE with 429 PB_ERR_NODE_STREAMS_FULL until one closes', async () => {
    // From their own loopback addresses, so the per-address limit stays out of the way.
    const [a, b, c] = await Promise.all(['n1', 'n2', 'n3'].map((u) => streams.token(u)));
    const first = await openSse(streams.streamUrl(a!));
    const second = await openSse(streams.streamUrl(b!));
    readers.push(first, second);
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await rawRequest(streams.streamUrl(c!), { localAddress: '127.0.0.3' });
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body)).toMatchObject({ error: { code: 'PB_ERR_NODE_STREAMS_FULL' } });
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    first.close();
    const deadline = Date.now() + 10_000;
    while (streams.postbox.hub.size > 1 && Date.now() < deadline) await sleep(20);
    const again = await rawRequest(streams.streamUrl(c!), { localAddress: '127.0.0.4' });
    expect(again.status).toBe(200);
    expect(await metric(streams, 'postbox_rate_limited_total{limit="node_streams"}')).toBe(1);
  });

  it('refuses stream opens past STREAM_OPENS_PER_ADDRESS per window, HEADs and bad tokens included, per address', async () => {
    const token = await streams.token('opener');
    const from = (localAddress: string, t = token, headers: Record<string, string> = {}) =>
      rawRequest(streams.streamUrl(t), { method: 'HEAD', localAddress, headers });
    expect((await from('127.0.0.20')).status).toBe(200);
    expect((await from('127.0.0.20', 'forged')).status).toBe(401);
    // X-Forwarded-For is not trusted without TRUST_PROXY_HOPS: it changes nothing.
    expect((await from('127.0.0.20', token, { 'x-forwarded-for': '10.0.0.1' })).status).toBe(200);
    const refused = await from('127.0.0.20');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const get = await rawRequest(streams.streamUrl(token), { localAddress: '127.0.0.20' });
    expect(get.status).toBe(429);
    expect((await from('127.0.0.21')).status).toBe(200);
    expect(await metric(streams, 'postbox_rate_limited_total{limit="address_opens"}')).toBe(2);
  });

  it('behind TRUST_PROXY_HOPS=1, counts the address the proxy appended, not what the client wrote before it', async () => {
    const token = await proxied.token('behind');
    const via = (chain: string) =>
      rawRequest(proxied.streamUrl(token), { method: 'HEAD', headers: { 'x-forwarded-for': chain } });
    expect((await via('1.1.1.1, 203.0.113.9')).status).toBe(200);
    expect((await via('2.2.2.2, 203.0.113.9')).status).toBe(200);
    expect((await via('3.3.3.3, 203.0.113.9')).status).toBe(429);
    expect((await via('203.0.113.10')).status).toBe(200);
  });
});
