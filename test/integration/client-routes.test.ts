import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Koa from 'koa';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { clientRoutes } from '../../src/http/client-routes.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

beforeAll(() => ensureClientBuilt());
const on = useNode({ DEMO: 1, DRAIN_INTERVAL_MS: 50 });
const off = useNode({ DRAIN_INTERVAL_MS: 50, KEY_PREFIX: 'off' }, { redis: on.redis });

const postJson = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('GET /client/postbox.js', () => {
  it('serves the built client as JavaScript, cacheable, importable from other origins', async () => {
    const res = await fetch(`${off.app.url}/client/postbox.js`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('public, max-age=300');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.text()).toMatch(/export function connect\(/);
    const etag = res.headers.get('etag');
    expect(etag).toMatch(/^".+"$/);
    // As a browser revalidates (fetch() alone would add `cache-control: no-cache`, which forbids a 304).
    const again = await fetch(`${off.app.url}/client/postbox.js`, {
      headers: { 'if-none-match': etag ?? '', 'cache-control': 'max-age=0' },
    });
    expect(again.status).toBe(304);

    const types = await fetch(`${off.app.url}/client/postbox.d.ts`);
    expect(types.status).toBe(200);
    expect(await types.text()).toMatch(/export declare function connect\(options: PostboxOptions\): PostboxClient;/);
    expect((await fetch(`${off.app.url}/client/other.js`)).status).toBe(404);
  });

  it('answers 503 with a JSON error saying how to build it when the build is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postbox-noclient-'));
    const app = new Koa();
    app.use(errorMiddleware(pino({ level: 'silent' })));
    app.use(clientRoutes({ dir }).routes());
    const server: Server = createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/client/postbox.js`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('PB_ERR_CLIENT_NOT_BUILT');
      expect(body.error.message).toMatch(/tsc -p tsconfig\.client\.json/);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('demo', () => {
  it('is on in development, off otherwise, and DEMO decides', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).config.DEMO).toBe(true);
    expect(loadConfig({ NODE_ENV: 'test' }).config.DEMO).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development', DEMO: '0' }).config.DEMO).toBe(false);
    expect(loadConfig({ NODE_ENV: 'test', DEMO: 'true' }).config.DEMO).toBe(true);
    expect(() => loadConfig({ DEMO: 'yes' })).toThrow(/DEMO/);
  });

  it('is not served when DEMO is off', async () => {
    expect((await fetch(`${off.app.url}/demo`)).status).toBe(404);
    expect((await postJson(`${off.app.url}/demo/api/login`, { name: 'mallory' })).status).toBe(404);
  });

  it('serves the page with a strict content security policy', async () => {
    const res = await fetch(`${on.app.url}/demo`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(await res.text()).toMatch(/<script type="module" src="\/demo\/app\.js">/);
    expect((await fetch(`${on.app.url}/demo/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${on.app.url}/demo/style.css`)).status).toBe(200);
    expect((await fetch(`${on.app.url}/demo/secret.txt`)).status).toBe(404);
  });

  it('logs a user in through the public API: room membership, a clock schedule, a stream token', async () => {
    const res = await postJson(`${on.app.url}/demo/api/login`, { name: 'grace' });
    expect(res.status).toBe(200);
    const session = (await res.json()) as { userId: string; token: string; rooms: string[] };
    expect(session).toMatchObject({ userId: 'grace', rooms: ['lobby'], clock: true });
    const producer = (path: string) =>
      fetch(`${on.app.url}${path}`, { headers: { authorization: `Bearer ${on.app.config.API_KEY}` } });
    const members = await producer('/v1/rooms/lobby/members');
    expect(((await members.json()) as { members: string[] }).members).toContain('grace');
    const schedules = async () =>
      ((await (await producer('/v1/users/grace/schedules')).json()) as { schedules: Array<{ name: string }> }).schedules;
    expect(await schedules()).toEqual([expect.objectContaining({ name: 'clock', every: 1000, event: 'clock' })]);
    const stream = await fetch(`${on.app.url}/v1/stream?token=${session.token}`);
    expect(stream.status).toBe(200);
    await stream.body?.cancel();

    // The page's goodbye beacon stops the clock.
    expect((await postJson(`${on.app.url}/demo/api/presence`, { name: 'grace', bye: true })).status).toBe(204);
    await waitUntil(async () => expect(await schedules()).toEqual([]), 'the clock schedule is gone');
  });

  it('refuses names that could reach other API routes, and a send with neither `to` nor `room`', async () => {
    for (const name of ['..', 'a/b', '', 'x'.repeat(33)]) {
      const res = await postJson(`${on.app.url}/demo/api/login`, { name });
      expect(res.status).toBe(400);
    }
    const res = await postJson(`${on.app.url}/demo/api/send`, { from: 'grace', text: 'to whom?' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/either `to` or `room`/);
  });

  it('enqueues a direct message once for the recipient and once for the sender, even when retried', async () => {
    const send = { from: 'heidi', to: 'ivan', text: 'hello', msgId: 'retry-me-0001' };
    expect((await postJson(`${on.app.url}/demo/api/send`, send)).status).toBe(202);
    expect((await postJson(`${on.app.url}/demo/api/send`, send)).status).toBe(202);
    for (const user of ['heidi', 'ivan']) {
      const view = (await (await on.app.admin(`/admin/queues/${user}`)).json()) as { waiting: number };
      expect(view.waiting).toBe(1);
    }
  });
});
