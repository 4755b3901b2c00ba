import { execFile } from 'node:child_process';
import { request } from 'node:https';
import { promisify } from 'node:util';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPushService, type TestPushService } from '../helpers/push-service.js';

let push: TestPushService;
const server = webpush.generateVAPIDKeys();
const other = webpush.generateVAPIDKeys();
const subject = 'mailto:ops@postbox.example';

beforeAll(async () => {
  push = await startPushService();
});
afterAll(async () => {
  await push?.close();
});

function send(
  subscription: webpush.PushSubscription,
  payload: string,
  options: webpush.RequestOptions = {},
): Promise<webpush.SendResult> {
  return webpush.sendNotification(subscription, payload, {
    vapidDetails: { subject, publicKey: server.publicKey, privateKey: server.privateKey },
    TTL: 60,
    agent: push.agent,
    ...options,
  });
}

/** A hand-made request, for what web-push never sends (no TTL, another content coding). */
function post(endpoint: string, headers: Record<string, string>, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(endpoint, { method: 'POST', headers, agent: push.agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('startPushService', () => {
  it('decrypts a push sent by web-push and records its TTL, urgency, topic and a valid VAPID', async () => {
    const subscription = push.subscribe({ applicationServerKey: server.publicKey });
    expect(subscription.endpoint).toMatch(new RegExp(`^${push.url}/push/[A-Za-z0-9_-]+$`));
    expect(Buffer.from(subscription.keys.p256dh, 'base64url')).toHaveLength(65);
    expect(Buffer.from(subscription.keys.auth, 'base64url')).toHaveLength(16);

    const before = Math.floor(Date.now() / 1000);
    const result = await send(subscription, JSON.stringify({ text: 'héllo ✓' }), { TTL: 120, urgency: 'high', topic: 'inbox' });
    expect(result.statusCode).toBe(201);
    expect(result.headers.location).toMatch(new RegExp(`^${push.url}/message/`));

    const [got] = await push.waitFor((all) => all.some((r) => r.subscriptionId === push.idOf(subscription)));
    expect(got).toMatchObject({
      subscriptionId: push.idOf(subscription),
      status: 201,
      payload: JSON.stringify({ text: 'héllo ✓' }),
      headers: { ttl: 120, urgency: 'high', topic: 'inbox', contentEncoding: 'aes128gcm' },
      vapid: { present: true, valid: true, sub: subject, aud: push.url, key: server.publicKey },
    });
    expect(got!.headers.authorization).toMatch(/^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=[\w-]+$/);
    expect(got!.vapid.exp).toBeGreaterThan(before);
    expect(got!.vapid.exp).toBeLessThanOrEqual(before + 24 * 3600 + 60);
  });

  it('answers 403 to a VAPID of another key on a restricted subscription, and records it invalid', async () => {
    const subscription = push.subscribe({ applicationServerKey: server.publicKey });
    const vapidDetails = { subject, publicKey: other.publicKey, privateKey: other.privateKey };
    await expect(send(subscription, 'not for you', { vapidDetails })).rejects.toMatchObject({ statusCode: 403 });
    const got = push.received.find((r) => r.subscriptionId === push.idOf(subscription))!;
    expect(got.status).toBe(403);
    expect(got.payload).toBeNull();
    expect(got.vapid).toMatchObject({ present: true, valid: false, key: other.publicKey });
    expect(got.vapid.reason).toMatch(/applicationServerKey/);
  });

  it('answers 403 to a JWT signed with a key other than k, and 401 to a push without VAPID', async () => {
    const subscription = push.subscribe();
    // k says `server`, the signature is by `other`.
    const forged = { subject, publicKey: server.publicKey, privateKey: other.privateKey };
    await expect(send(subscription, 'forged', { vapidDetails: forged })).rejects.toMatchObject({ statusCode: 403 });
    // undefined here, and none set globally: web-push sends no Authorization.
    await expect(send(subscription, 'anonymous', { vapidDetails: undefined })).rejects.toMatchObject({ statusCode: 401 });
    await expect(send(subscription, 'signed')).resolves.toMatchObject({ statusCode: 201 });

    const mine = push.received.filter((r) => r.subscriptionId === push.idOf(subscription));
    expect(mine.map((r) => [r.status, r.vapid.valid, r.payload])).toEqual([
      [403, false, null],
      [401, false, null],
      [201, true, 'signed'],
    ]);
    expect(mine[0]!.vapid.reason).toMatch(/signature/);
    expect(mine[1]!.vapid.present).toBe(false);
  });

  it('answers 400 to a push without TTL or not in aes128gcm, and 404 to an unknown subscription', async () => {
    const subscription = push.subscribe();
    const { Authorization } = webpush.getVapidHeaders(push.url, subject, server.publicKey, server.privateKey, 'aes128gcm');
    const body = Buffer.from('opaque bytes');
    expect(await post(subscription.endpoint, { authorization: Authorization, 'content-encoding': 'aes128gcm' }, body)).toBe(400);
    expect(await post(subscription.endpoint, { authorization: Authorization, ttl: '60', 'content-encoding': 'aesgcm' }, body)).toBe(400);
    // Well-formed headers, but not encrypted to this subscription's keys.
    expect(await post(subscription.endpoint, { authorization: Authorization, ttl: '60', 'content-encoding': 'aes128gcm' }, body)).toBe(400);
    expect(await post(`${push.url}/push/nobody`, { authorization: Authorization, ttl: '60' }, Buffer.alloc(0))).toBe(404);

    const mine = push.received.filter((r) => r.subscriptionId === push.idOf(subscription));
    expect(mine.map((r) => [r.status, r.headers.ttl, r.headers.contentEncoding])).toEqual([
      [400, undefined, 'aes128gcm'],
      [400, 60, 'aesgcm'],
      [400, 60, 'aes128gcm'],
    ]);
    expect(mine[2]!.decryptError).toBeTruthy();
    expect(push.received.find((r) => r.subscriptionId === 'nobody')?.status).toBe(404);
  });

  it('answers a planned 410, then 429 with Retry-After, in order, then 201 again', async () => {
    const subscription = push.subscribe();
    const bystander = push.subscribe();
    push.respondWith(subscription, [{ status: 410 }, { status: 429, retryAfter: 7 }]);

    await expect(send(subscription, 'one')).rejects.toMatchObject({ statusCode: 410 });
    // Another subscription's answers are not taken from that plan.
    await expect(send(bystander, 'aside')).resolves.toMatchObject({ statusCode: 201 });
    await expect(send(subscription, 'two')).rejects.toMatchObject({ statusCode: 429, headers: { 'retry-after': '7' } });
    await expect(send(subscription, 'three')).resolves.toMatchObject({ statusCode: 201 });

    const mine = push.received.filter((r) => r.subscriptionId === push.idOf(subscription));
    expect(mine.map((r) => [r.status, r.payload])).toEqual([
      [410, 'one'],
      [429, 'two'],
      [201, 'three'],
    ]);
  });

  it('is trusted by a separate process through NODE_EXTRA_CA_CERTS=caFile', async () => {
    const subscription = push.subscribe();
    // What a spawned postbox server does: plain web-push, no agent, the CA from the environment.
    const script = `
      import webpush from 'web-push';
      const [subscription, details] = JSON.parse(process.argv[1]);
      const res = await webpush.sendNotification(subscription, 'from afar', { vapidDetails: details, TTL: 5 });
      process.stdout.write(String(res.statusCode));`;
    const details = { subject, publicKey: server.publicKey, privateKey: server.privateKey };
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script, JSON.stringify([subscription, details])],
      { env: { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: push.caFile }, timeout: 20_000 },
    );
    expect(stdout).toBe('201');
    const got = push.received.find((r) => r.subscriptionId === push.idOf(subscription));
    expect(got).toMatchObject({ status: 201, payload: 'from afar', vapid: { valid: true } });
  });

  it("applies a '*' plan to any subscription without a plan of its own", async () => {
    const a = push.subscribe();
    const b = push.subscribe();
    push.respondWith('*', [{ status: 500 }, { status: 503, retryAfter: 1 }]);
    await expect(send(a, 'a1')).rejects.toMatchObject({ statusCode: 500 });
    await expect(send(b, 'b1')).rejects.toMatchObject({ statusCode: 503, headers: { 'retry-after': '1' } });
    await expect(send(a, 'a2')).resolves.toMatchObject({ statusCode: 201 });
  });
});
