import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { ACK_TIMEOUT_MS: 60_000 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A JWT of any header and payload, signed with HMAC-SHA256 (or not at all) by `secret`. */
function jwt(header: object, payload: object, secret?: string, algorithm = 'sha256'): string {
  const unsigned = `${b64(header)}.${b64(payload)}`;
  const signature = secret === undefined ? '' : createHmac(algorithm, secret).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

const secret = () => app.config.TOKEN_SECRET;
const valid = (sub: unknown, extra: object = {}) => jwt({ alg: 'HS256', typ: 'JWT' }, { sub, exp: now() + 600, ...extra }, secret());

/** Every kind of token that must not open a stream or ack anything. */
function forgeries(): Array<[string, string, 401 | 403]> {
  const real = valid('victim');
  const [h, p] = real.split('.');
  return [
    ['alg none, no signature', jwt({ alg: 'none', typ: 'JWT' }, { sub: 'victim', exp: now() + 600 }), 401],
    ['alg none with a signature', `${jwt({ alg: 'none' }, { sub: 'victim', exp: now() + 600 })}${'x'.repeat(43)}`, 401],
    ['signed with another secret', jwt({ alg: 'HS256' }, { sub: 'victim', exp: now() + 600 }, 'another-secret-0123456789-0123456789'), 401],
    ['HS512 with the right secret', jwt({ alg: 'HS512' }, { sub: 'victim', exp: now() + 600 }, secret(), 'sha512'), 401],
    ['RS256 header, HMAC signature (key confusion)', jwt({ alg: 'RS256' }, { sub: 'victim', exp: now() + 600 }, secret()), 401],
    ['expired', jwt({ alg: 'HS256' }, { sub: 'victim', exp: now() - 5 }, secret()), 401],
    ['not yet valid (nbf)', valid('victim', { nbf: now() + 3600 }), 401],
    ['without sub', jwt({ alg: 'HS256' }, { exp: now() + 600 }, secret()), 401],
    ['without exp', jwt({ alg: 'HS256' }, { sub: 'victim' }, secret()), 401],
    ['exp as a string', jwt({ alg: 'HS256' }, { sub: 'victim', exp: String(now() + 600) }, secret()), 401],
    ['empty sub', valid(''), 401],
    ['sub a number', valid(42), 401],
    ['sub not a user id (a brace)', valid('victim}x'), 401],
    ['sub not a user id (CR LF)', valid('victim\r\nevent: x'), 401],
    ['payload swapped, signature kept', `${h}.${b64({ sub: 'someone-else', exp: now() + 600 })}.${real.split('.')[2]}`, 401],
    ['signature cut off', `${h}.${p}.`, 401],
    ['two parts', `${h}.${p}`, 401],
    ['unknown critical header', jwt({ alg: 'HS256', crit: ['x-pb'], 'x-pb': 1 }, { sub: 'victim', exp: now() + 600 }, secret()), 401],
    ['not a JWT', 'hello', 401],
    ['the API key', app.config.API_KEY, 403],
    ['the admin key', app.config.ADMIN_KEY, 403],
  ];
}

describe('forged stream tokens', () => {
  it('open no stream, ack nothing and nack nothing, whatever the forgery', async () => {
    const id = await app.enqueue('victim', 'private');
    // In flight: written to the victim's own stream, so an ack could remove it.
    const own = await openSse(app.streamUrl(await app.token('victim')));
    readers.push(own);
    await own.waitFor(1);
    for (const [name, token, status] of forgeries()) {
      const stream = await fetch(app.streamUrl(token), { signal: AbortSignal.timeout(10_000) });
      const bearer = await fetch(`${app.url}/v1/stream`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
      const acks = await app.ack(token, [id]);
      const nacks = await fetch(`${app.url}/v1/nacks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ids: [id] }),
      });
      const got = [stream.status, bearer.status, acks.status, nacks.status];
      expect(`${name}: ${got.join(' ')}`).toBe(`${name}: ${Array<number>(4).fill(status).join(' ')}`);
      const { error } = (await stream.json()) as { error: { code: string } };
      expect(error.code).toBe(status === 401 ? 'PB_ERR_TOKEN_INVALID' : 'PB_ERR_FORBIDDEN');
    }
    expect(app.postbox.hub.count('victim')).toBe(1);
    expect(app.postbox.hub.count('someone-else')).toBe(0);
    const view = (await (await app.admin('/admin/queues/victim')).json()) as { inflight: number; inflightMessages: Array<{ deliveries: number }> };
    expect(view.inflight).toBe(1);
    expect(view.inflightMessages[0]?.deliveries).toBe(0);
  });

  it("another user's valid token reads only that user's stream and cannot ack the victim's messages", async () => {
    const id = await app.enqueue('owner', 'mine');
    const ownerStream = await openSse(app.streamUrl(await app.token('owner')));
    readers.push(ownerStream);
    await ownerStream.waitFor(1);
    const intruder = await app.token('intruder');
    const theirs = await openSse(app.streamUrl(intruder));
    readers.push(theirs);
    expect(theirs.status).toBe(200);
    const acked = (await (await app.ack(intruder, [id])).json()) as { acked: number };
    expect(acked.acked).toBe(0);
    const nacked = await fetch(`${app.url}/v1/nacks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${intruder}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ids: [id] }),
    });
    expect(((await nacked.json()) as { counted: number }).counted).toBe(0);
    expect(theirs.events.filter((e) => e.id === id)).toEqual([]);
    expect(((await (await app.admin('/admin/queues/owner')).json()) as { inflight: number }).inflight).toBe(1);
  });

  it('a stream token is refused with 403 on producer and admin routes, and a producer key on admin routes', async () => {
    const token = await app.token('climber');
    const asToken = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    expect((await fetch(`${app.url}/v1/users/climber/messages`, { method: 'POST', headers: asToken, body: '{"data":1}' })).status).toBe(403);
    expect((await fetch(`${app.url}/v1/tokens`, { method: 'POST', headers: asToken, body: '{"userId":"root"}' })).status).toBe(403);
    expect((await fetch(`${app.url}/admin/queues`, { headers: asToken })).status).toBe(403);
    expect((await fetch(`${app.url}/admin/queues`, { headers: { authorization: `Bearer ${app.config.API_KEY}` } })).status).toBe(403);
    expect((await fetch(`${app.url}/admin/queues`, { headers: { authorization: 'Bearer guess-guess-guess-guess' } })).status).toBe(401);
  });

  it('a token signed with the secret by jose for a user opens that user\'s stream (the forgeries are refused for what they are)', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('genuine')
      .setExpirationTime(now() + 60)
      .sign(new TextEncoder().encode(secret()));
    const reader = await openSse(app.streamUrl(token));
    readers.push(reader);
    expect(reader.status).toBe(200);
    expect(app.postbox.hub.count('genuine')).toBe(1);
  });
});
