import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let app: TestApp;
let token: string;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DEMO: 1 });
  // Something to find on the routes that read.
  await app.enqueue('present', { hello: 1 });
  expect((await app.call('PUT', '/v1/rooms/hall/members/present')).status).toBe(204);
  expect((await app.call('PUT', '/v1/users/present/schedules/tick', { every: 600_000, data: 1 })).status).toBe(201);
  token = await app.token('present');
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

type Who = 'producer' | 'admin' | 'stream' | 'none';
/** Every route, with its methods and who may call it. */
const ROUTES: Array<[string[], string, Who]> = [
  [['GET'], '/healthz', 'none'],
  [['GET'], '/readyz', 'none'],
  [['GET'], '/metrics', 'none'],
  [['POST'], '/v1/users/present/messages', 'producer'],
  [['POST'], '/v1/messages', 'producer'],
  [['POST'], '/v1/tokens', 'producer'],
  [['DELETE'], '/v1/users/present/scheduled/s-1', 'producer'],
  [['PUT', 'DELETE'], '/v1/users/present/schedules/tick', 'producer'],
  [['GET'], '/v1/users/present/schedules', 'producer'],
  [['PUT', 'DELETE'], '/v1/rooms/hall/members/present', 'producer'],
  [['GET', 'POST'], '/v1/rooms/hall/members', 'producer'],
  [['POST'], '/v1/rooms/hall/messages', 'producer'],
  [['GET'], '/v1/stream', 'stream'],
  [['POST'], '/v1/acks', 'stream'],
  [['POST'], '/v1/nacks', 'stream'],
  [['GET'], '/admin/queues', 'admin'],
  [['GET', 'DELETE'], '/admin/queues/present', 'admin'],
  [['POST'], '/admin/queues/present/dead/retry', 'admin'],
  [['DELETE'], '/admin/queues/present/messages/1-0', 'admin'],
  [['GET'], '/admin/stats', 'admin'],
  [['GET'], '/admin/rooms', 'admin'],
  [['GET'], '/admin/rooms/hall', 'admin'],
  [['GET'], '/admin', 'none'],
  [['GET'], '/admin/assets/admin.js', 'none'],
  [['POST', 'DELETE'], '/admin/session', 'admin'],
  [['GET'], '/admin/jobs', 'admin'],
  [['GET'], '/admin/jobs/api/queues', 'admin'],
  [['GET'], '/client/postbox.js', 'none'],
  [['GET'], '/demo/', 'none'],
  [['GET'], '/demo/app.js', 'none'],
  [['POST'], '/demo/api/login', 'none'],
  [['GET'], '/no/such/route', 'none'],
];

function headers(who: Who, authorised: boolean): Record<string, string> {
  if (!authorised || who === 'none') return {};
  const key = who === 'producer' ? app.config.API_KEY : who === 'admin' ? app.config.ADMIN_KEY : token;
  return { authorization: `Bearer ${key}` };
}

async function call(method: string, path: string, extra: Record<string, string>) {
  const res = await fetch(app.url + path, { method, headers: extra, signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  return { status: res.status, body, headers: res.headers };
}

describe('HEAD and OPTIONS on every route', () => {
  it('HEAD answers what GET would, without a body, never a 5xx, and changes nothing', async () => {
    const before = await redisSnapshot(redis.client(), 'pb');
    for (const [methods, path, who] of ROUTES) {
      for (const authorised of [true, false]) {
        const head = await call('HEAD', path, headers(who, authorised));
        const label = `HEAD ${path}${authorised ? '' : ' (no credentials)'}`;
        expect(`${label} ${head.status}`).not.toMatch(/ 5\d\d$/);
        expect(`${label} body ${JSON.stringify(head.body)}`).toBe(`${label} body ""`);
        if (methods.includes('GET') && path !== '/v1/stream') {
          const get = await call('GET', path, headers(who, authorised));
          expect(`${label} ${head.status}`).toBe(`${label} ${get.status}`);
        } else if (!methods.includes('GET') && authorised && path !== '/no/such/route') {
          expect(`${label} ${head.status}`).toBe(`${label} 405`);
        }
      }
    }
    expect(app.postbox.hub.count('present')).toBe(0);
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'pb'))).toEqual([]);
  });

  it('OPTIONS is never a 5xx and changes nothing; on the subscriber routes it is a CORS preflight', async () => {
    const before = await redisSnapshot(redis.client(), 'pb');
    for (const [, path, who] of ROUTES) {
      for (const authorised of [true, false]) {
        const res = await call('OPTIONS', path, { ...headers(who, authorised), origin: 'https://app.example', 'access-control-request-method': 'POST' });
        const label = `OPTIONS ${path}${authorised ? '' : ' (no credentials)'}`;
        expect(`${label} ${res.status}`).not.toMatch(/ 5\d\d$/);
        if (['/v1/stream', '/v1/acks', '/v1/nacks'].includes(path)) {
          expect(`${label} ${res.status}`).toBe(`${label} 204`);
          expect(res.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
        }
      }
    }
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'pb'))).toEqual([]);
  });
});
