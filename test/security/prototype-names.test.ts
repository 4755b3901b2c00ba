import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// A request-supplied string that indexes a plain object finds inherited properties
// (`{}['constructor']` is a function): every name below must be an ordinary string everywhere.
const NAMES = [
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toLocaleString',
  '__defineGetter__',
  'prototype',
];

let redis: TestRedis;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DEMO: 1 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

type Who = 'producer' | 'admin' | 'none';
/** Every route template that takes a path segment; `:x` is replaced by each name. */
const ROUTES: Array<[string, string, Who, unknown?]> = [
  ['POST', '/v1/users/:x/messages', 'producer', { data: 1 }],
  ['DELETE', '/v1/users/:x/scheduled/:x', 'producer'],
  ['PUT', '/v1/users/:x/schedules/:x', 'producer', { every: 60_000, data: 1 }],
  ['GET', '/v1/users/:x/schedules', 'producer'],
  ['DELETE', '/v1/users/:x/schedules/:x', 'producer'],
  ['PUT', '/v1/rooms/:x/members/:x', 'producer'],
  ['POST', '/v1/rooms/:x/members', 'producer', { userIds: ['a'] }],
  ['GET', '/v1/rooms/:x/members', 'producer'],
  ['POST', '/v1/rooms/:x/messages', 'producer', { data: 1 }],
  ['DELETE', '/v1/rooms/:x/members/:x', 'producer'],
  ['GET', '/admin/queues/:x', 'admin'],
  ['POST', '/admin/queues/:x/dead/retry', 'admin'],
  ['DELETE', '/admin/queues/:x/messages/:x', 'admin'],
  ['GET', '/admin/rooms/:x', 'admin'],
  ['DELETE', '/admin/queues/:x', 'admin'],
  ['GET', '/admin/assets/:x', 'none'],
  ['GET', '/client/:x', 'none'],
  ['GET', '/demo/:x', 'none'],
  ['GET', '/admin/jobs/api/queues/:x', 'admin'],
  ['GET', '/admin/jobs/api/queues/:x/:x', 'admin'],
  ['PUT', '/admin/jobs/api/queues/:x/retry/failed', 'admin'],
  ['GET', '/:x', 'none'],
  ['GET', '/v1/:x', 'none'],
];

function call(method: string, path: string, who: Who, body?: unknown): Promise<Response> {
  const key = who === 'producer' ? app.config.API_KEY : who === 'admin' ? app.config.ADMIN_KEY : undefined;
  return fetch(app.url + path, {
    method,
    headers: {
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
}

describe('prototype-named path segments and query keys', () => {
  for (const [method, template, who, body] of ROUTES) {
    it(`${method} ${template}: never a 5xx for any of them`, async () => {
      const answers: string[] = [];
      for (const name of NAMES) {
        const path = template.replaceAll(':x', encodeURIComponent(name));
        const res = await call(method, path, who, body);
        await res.arrayBuffer();
        answers.push(`${name} ${res.status}`);
      }
      expect(answers.filter((a) => / 5\d\d$/.test(a))).toEqual([]);
    });
  }

  it('the static files answer 404 for every one of them', async () => {
    for (const name of NAMES) {
      for (const dir of ['/admin/assets/', '/client/', '/demo/']) {
        const res = await call('GET', dir + encodeURIComponent(name), 'none');
        expect(`${dir}${name} ${res.status}`).toBe(`${dir}${name} 404`);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_NOT_FOUND');
      }
    }
  });

  it('prototype-named query keys and values change nothing and are never a 5xx', async () => {
    const query = NAMES.map((n) => `${encodeURIComponent(n)}=${encodeURIComponent(n)}`).join('&');
    const paths: Array<[string, Who]> = [
      ['/admin/queues', 'admin'],
      [`/admin/queues?cursor=__proto__&sort=constructor`, 'admin'],
      ['/admin/queues?sort=backlog&cursor=toString', 'admin'],
      ['/admin/rooms', 'admin'],
      ['/admin/rooms?cursor=constructor', 'admin'],
      ['/admin/stats', 'admin'],
      ['/v1/rooms/r/members?cursor=__proto__', 'producer'],
      ['/v1/users/u/schedules', 'producer'],
      ['/healthz', 'none'],
      ['/readyz', 'none'],
      ['/metrics', 'none'],
      ['/admin', 'none'],
    ];
    for (const [path, who] of paths) {
      const sep = path.includes('?') ? '&' : '?';
      const res = await call('GET', path + sep + query, who);
      await res.arrayBuffer();
      expect(`${path} ${res.status}`).not.toMatch(/ 5\d\d$/);
    }
    const token = await app.token('u');
    const stream = await fetch(`${app.streamUrl(token)}&${query}`, { method: 'HEAD' });
    expect(stream.status).toBe(200);
  });

  it('refuses a "__proto__" key in a JSON body with a 400 that says so; other prototype names are unknown fields', async () => {
    const res = await app.produce('/v1/users/u/messages', '{"data":{"__proto__":{"polluted":true}}}');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/__proto__/);
    for (const name of NAMES.filter((n) => n !== '__proto__')) {
      const extra = await app.produce('/v1/users/u/messages', `{"data":1,"${name}":1}`);
      expect(`${name} ${extra.status}`).toBe(`${name} 400`);
    }
    // Prototype names inside data are data: stored and delivered as sent.
    const data = Object.fromEntries(NAMES.filter((n) => n !== '__proto__').map((n) => [n, n]));
    expect((await app.produce('/v1/users/u/messages', { data })).status).toBe(201);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('a user, a room and a schedule named like them work end to end', async () => {
    for (const name of NAMES) {
      const token = await app.token(name);
      const reader = await openSse(app.streamUrl(token));
      readers.push(reader);
      expect(reader.status).toBe(200);
      const id = await app.enqueue(name, { to: name });
      const [event] = await reader.waitFor(1, 10_000);
      expect(event).toMatchObject({ id, data: JSON.stringify({ to: name }) });
      expect((await app.ack(token, [id])).status).toBe(200);
      expect((await app.call('PUT', `/v1/rooms/${name}/members/${name}`)).status).toBe(204);
      const members = (await (await app.call('GET', `/v1/rooms/${name}/members`)).json()) as { members: string[] };
      expect(members.members).toContain(name);
      expect((await app.call('PUT', `/v1/users/${name}/schedules/${name}`, { every: 600_000, data: 1 })).status).toBe(201);
      const schedules = (await (await app.call('GET', `/v1/users/${name}/schedules`)).json()) as {
        schedules: Array<{ name: string }>;
      };
      expect(schedules.schedules.map((s) => s.name)).toEqual([name]);
      expect((await app.call('DELETE', `/v1/users/${name}/schedules/${name}`)).status).toBe(204);
      const view = await app.admin(`/admin/queues/${name}`);
      expect(view.status).toBe(200);
      reader.close();
    }
  });
});
