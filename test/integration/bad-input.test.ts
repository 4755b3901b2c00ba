import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { startNodeForTest, useNode } from '../helpers/use-node.js';

const node = useNode({
  BODY_MAX_BYTES: 4096,
  MESSAGE_MAX_BYTES: 1024,
  QUEUE_MAX_LENGTH: 3,
  MAX_STREAMS_PER_USER: 2,
});

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.message).toBe('string');
  return { status: res.status, code: body.error.code, message: body.error.message };
}

/**
 * Every rejected request must leave Redis as it was. BullMQ's own bookkeeping
 * keys (stalled checks) come and go on their own timers, so they are not counted.
 */
async function keyCount(): Promise<number> {
  const keys = await node.redis.client().keys('*');
  return keys.filter((k) => !k.startsWith('pb:bull:')).length;
}

describe('bad input on enqueue', () => {
  const cases: Array<[string, string, unknown, number, string]> = [
    ['malformed JSON', '/v1/users/u1/messages', '{"data": ', 400, 'PB_ERR_BAD_JSON'],
    ['missing data', '/v1/users/u1/messages', { event: 'x' }, 400, 'PB_ERR_VALIDATION'],
    ['event of wrong type', '/v1/users/u1/messages', { data: 1, event: 5 }, 400, 'PB_ERR_VALIDATION'],
    ['event with a newline', '/v1/users/u1/messages', { data: 1, event: 'a\ndata: evil' }, 400, 'PB_ERR_VALIDATION'],
    ['event with a CR', '/v1/users/u1/messages', { data: 1, event: 'a\rb' }, 400, 'PB_ERR_VALIDATION'],
    ['event too long', '/v1/users/u1/messages', { data: 1, event: 'e'.repeat(65) }, 400, 'PB_ERR_VALIDATION'],
    ['unknown field', '/v1/users/u1/messages', { data: 1, colour: 'red' }, 400, 'PB_ERR_VALIDATION'],
    ['ttlMs negative', '/v1/users/u1/messages', { data: 1, ttlMs: -5 }, 400, 'PB_ERR_VALIDATION'],
    ['user id with a space', '/v1/users/bad%20user/messages', { data: 1 }, 400, 'PB_ERR_VALIDATION'],
    ['user id with a brace', '/v1/users/a%7Bb%7D/messages', { data: 1 }, 400, 'PB_ERR_VALIDATION'],
    ['user id too long', `/v1/users/${'u'.repeat(129)}/messages`, { data: 1 }, 400, 'PB_ERR_VALIDATION'],
    ['message over MESSAGE_MAX_BYTES', '/v1/users/u1/messages', { data: 'x'.repeat(2000) }, 413, 'PB_ERR_MESSAGE_TOO_LARGE'],
    ['body over BODY_MAX_BYTES', '/v1/users/u1/messages', { data: 'x'.repeat(5000) }, 413, 'PB_ERR_BODY_TOO_LARGE'],
    ['JSON that is not an object', '/v1/users/u1/messages', '[1,2]', 400, 'PB_ERR_VALIDATION'],
    ['empty batch', '/v1/messages', { messages: [] }, 400, 'PB_ERR_VALIDATION'],
    [
      'batch over 1000',
      '/v1/messages',
      { messages: Array.from({ length: 1001 }, () => ({ userId: 'u', data: 1 })) },
      413,
      'PB_ERR_BODY_TOO_LARGE',
    ],
    ['batch item without user', '/v1/messages', { messages: [{ userId: 'ok', data: 1 }, { data: 2 }] }, 400, 'PB_ERR_VALIDATION'],
    [
      'batch item with a bad event',
      '/v1/messages',
      { messages: [{ userId: 'ok', data: 1 }, { userId: 'ok', data: 2, event: 'x y' }] },
      400,
      'PB_ERR_VALIDATION',
    ],
  ];

  for (const [name, path, body, status, code] of cases) {
    it(`rejects ${name} with ${status} ${code} and changes nothing`, async () => {
      const before = await keyCount();
      const res = await node.app.produce(path, body);
      expect(await errorOf(res)).toMatchObject({ status, code });
      expect(await keyCount()).toBe(before);
    });
  }

  it('rejects a non-JSON content type with 415', async () => {
    const res = await node.app.produce('/v1/users/u1/messages', 'data=1', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(await errorOf(res)).toMatchObject({ status: 415, code: 'PB_ERR_UNSUPPORTED_MEDIA_TYPE' });
  });

  it('rejects a batch of 1001 small messages by count when the body fits', async () => {
    const big = await startNodeForTest(node.redis, { KEY_PREFIX: 'big' });
    const res = await big.produce('/v1/messages', {
      messages: Array.from({ length: 1001 }, () => ({ userId: 'u', data: 1 })),
    });
    const err = await errorOf(res);
    expect(err).toMatchObject({ status: 400, code: 'PB_ERR_VALIDATION' });
    expect(err.message).toMatch(/1000/);
  });

  it('answers 429 with Retry-After when the queue is full, and keeps the queue as it was', async () => {
    const { app, redis } = node;
    for (let i = 0; i < 3; i += 1) await app.enqueue('full-user', i);
    const res = await app.produce('/v1/users/full-user/messages', { data: 'one too many' });
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await errorOf(res)).toMatchObject({ status: 429, code: 'PB_ERR_QUEUE_FULL' });
    const batch = await app.produce('/v1/messages', {
      messages: [
        { userId: 'other-user', data: 'fits' },
        { userId: 'full-user', data: 'does not' },
      ],
    });
    expect(await errorOf(batch)).toMatchObject({ status: 429, code: 'PB_ERR_QUEUE_FULL' });
    expect(await redis.client().xlen('pb:{full-user}:m')).toBe(3);
    expect(await redis.client().exists('pb:{other-user}:m')).toBe(0);
  });
});

describe('bad credentials', () => {
  it('401 without credentials, 401 with an unknown key, 403 with the admin key or a token', async () => {
    const { app, redis } = node;
    const url = `${app.url}/v1/users/u1/messages`;
    const post = (auth?: string) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
        body: JSON.stringify({ data: 1 }),
      });
    expect(await errorOf(await post())).toMatchObject({ status: 401, code: 'PB_ERR_UNAUTHENTICATED' });
    expect(await errorOf(await post('nope-nope-nope'))).toMatchObject({ status: 401 });
    expect(await errorOf(await post(app.config.ADMIN_KEY))).toMatchObject({ status: 403, code: 'PB_ERR_FORBIDDEN' });
    expect(await errorOf(await post(await app.token('u1')))).toMatchObject({ status: 403 });
    expect(await redis.client().exists('pb:{u1}:m')).toBe(0);
  });

  it('refuses streams with a missing, forged or expired token, or a key', async () => {
    const { app } = node;
    const stream = (query: string) => fetch(`${app.url}/v1/stream${query}`);
    expect(await errorOf(await stream(''))).toMatchObject({ status: 401, code: 'PB_ERR_TOKEN_INVALID' });
    expect(await errorOf(await stream('?token=abc.def.ghi'))).toMatchObject({ status: 401 });
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('victim')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('not-the-secret-not-the-secret-not-the-secret'));
    expect(await errorOf(await stream(`?token=${forged}`))).toMatchObject({ status: 401 });
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('victim')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(new TextEncoder().encode(app.config.TOKEN_SECRET));
    const expiredErr = await errorOf(await stream(`?token=${expired}`));
    expect(expiredErr).toMatchObject({ status: 401, code: 'PB_ERR_TOKEN_INVALID' });
    expect(expiredErr.message).toMatch(/expired/);
    const noExp = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('victim')
      .sign(new TextEncoder().encode(app.config.TOKEN_SECRET));
    expect(await errorOf(await stream(`?token=${noExp}`))).toMatchObject({ status: 401 });
    expect(await errorOf(await stream(`?token=${app.config.API_KEY}`))).toMatchObject({ status: 403 });
  });

  it('refuses acks without a token and rejects malformed ids', async () => {
    const { app } = node;
    const res = await fetch(`${app.url}/v1/acks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ids: ['1-0'] }),
    });
    expect(await errorOf(res)).toMatchObject({ status: 401 });
    const token = await app.token('acker');
    expect(await errorOf(await app.ack(token, ['not-an-id']))).toMatchObject({ status: 400, code: 'PB_ERR_VALIDATION' });
    expect(await errorOf(await app.ack(token, []))).toMatchObject({ status: 400 });
  });

  it('rejects a malformed Last-Event-ID with 400', async () => {
    const { app } = node;
    const token = await app.token('u-last');
    const res = await fetch(`${app.url}/v1/stream?token=${token}`, { headers: { 'last-event-id': '../../etc' } });
    expect(await errorOf(res)).toMatchObject({ status: 400, code: 'PB_ERR_VALIDATION' });
  });

  it('answers 429 to one stream too many for a user', async () => {
    const { app } = node;
    const token = await app.token('many-tabs');
    const a = await app.openStream('many-tabs', { token });
    const b = await app.openStream('many-tabs', { token });
    const c = await fetch(app.streamUrl(token));
    expect(await errorOf(c)).toMatchObject({ status: 429, code: 'PB_ERR_TOO_MANY_STREAMS' });
    a.close();
    b.close();
  });

  it('rejects bad token requests', async () => {
    const { app } = node;
    expect(await errorOf(await app.produce('/v1/tokens', { userId: 'a b' }))).toMatchObject({ status: 400 });
    expect(await errorOf(await app.produce('/v1/tokens', { userId: 'ok', ttlSeconds: 0 }))).toMatchObject({
      status: 400,
    });
  });
});

describe('routes', () => {
  it('answers 404 JSON for an unknown route and 405 for a wrong method', async () => {
    const { app } = node;
    expect(await errorOf(await fetch(`${app.url}/nope`))).toMatchObject({ status: 404, code: 'PB_ERR_NOT_FOUND' });
    expect(await errorOf(await fetch(`${app.url}/v1/tokens`))).toMatchObject({ status: 405 });
  });
});
