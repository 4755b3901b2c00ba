import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subscriptionId } from '../../src/queue/push-subscriptions.js';
import { finishedCheck, metric } from '../helpers/push-jobs.js';
import { startPushService, type TestPushService } from '../helpers/push-service.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startPushApp, testVapid, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let push: TestPushService;
/** Loopback endpoints allowed (the test push service is on 127.0.0.1), at most 3 subscriptions per user. */
let app: PushTestApp;
/** As in production: private addresses and ports other than 443 refused. Its own KEY_PREFIX, so no other node's worker sends its pushes. */
let strict: PushTestApp;
/** No VAPID keys: push off. */
let off: TestApp;
/** A plain HTTP and an HTTPS listener that count every connection: a refused endpoint must never be fetched. */
let httpTrap: Server;
let httpsTrap: Server;
let trapped = 0;

const tls = (name: string) => readFileSync(new URL(`../helpers/tls/${name}`, import.meta.url), 'utf8');

async function listen(server: Server): Promise<string> {
  server.on('connection', () => (trapped += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return String((server.address() as AddressInfo).port);
}

beforeAll(async () => {
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_MAX_SUBSCRIPTIONS_PER_USER: 3, PUSH_AFTER_MS: 100 } });
  strict = await startPushApp(redis.url, {
    ca: push.ca,
    overrides: { PUSH_ALLOW_PRIVATE_ENDPOINTS: 0, PUSH_AFTER_MS: 100, KEY_PREFIX: 'strict' },
  });
  off = await startApp(redis.url);
  httpTrap = createHttpServer((_req, res) => res.end());
  httpsTrap = createHttpsServer({ cert: tls('push-service-cert.pem'), key: tls('push-service-key.pem') }, (_req, res) => res.end());
  await Promise.all([listen(httpTrap), listen(httpsTrap)]);
});
afterAll(async () => {
  await Promise.allSettled([app?.close(), strict?.close(), off?.close()]);
  httpTrap?.close();
  httpsTrap?.close();
  await push?.close();
  await redis?.stop();
});

const portOf = (server: Server) => (server.address() as AddressInfo).port;

describe('push subscriptions', () => {
  it('gives the VAPID public key to subscribe with', async () => {
    const res = await fetch(`${app.url}/v1/push/public-key`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ publicKey: testVapid.publicKey });
  });

  it('stores a subscription for the token’s user, refreshes it, and removes it', async () => {
    const token = await app.token('sub-alice');
    const subscription = push.subscribe({ applicationServerKey: testVapid.publicKey });
    const first = await app.subscribe(token, subscription);
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ id: subscriptionId(subscription.endpoint), replaced: 0 });
    expect(await app.subscriptions(token)).toMatchObject([{ endpoint: subscription.endpoint }]);

    // The browser sends the same subscription again on every visit: one subscription still.
    expect((await app.subscribe(token, subscription)).status).toBe(200);
    expect(await app.subscriptions(token)).toHaveLength(1);
    // Another user sees none of it.
    expect(await app.subscriptions(await app.token('sub-bob'))).toEqual([]);
    // The admin's user view counts them beside the queue.
    await app.enqueue('sub-alice', 'hello');
    expect(await (await app.admin('/admin/queues/sub-alice')).json()).toMatchObject({ pushSubscriptions: 1 });

    expect((await app.unsubscribe(token, subscription.endpoint)).status).toBe(204);
    expect(await app.subscriptions(token)).toEqual([]);
    const again = await app.unsubscribe(token, subscription.endpoint);
    expect(again.status).toBe(404);
    expect(await again.json()).toMatchObject({ error: { code: 'PB_ERR_PUSH_SUBSCRIPTION_NOT_FOUND' } });
  });

  it('keeps at most PUSH_MAX_SUBSCRIPTIONS_PER_USER, replacing the oldest', async () => {
    const token = await app.token('sub-many');
    const subs = [push.subscribe(), push.subscribe(), push.subscribe(), push.subscribe()];
    for (const s of subs.slice(0, 3)) expect((await app.subscribe(token, s)).status).toBe(201);
    const fourth = await app.subscribe(token, subs[3]);
    expect(fourth.status).toBe(201);
    expect(await fourth.json()).toMatchObject({ replaced: 1 });
    const kept = (await app.subscriptions(token)).map((s) => s.endpoint).sort();
    expect(kept).toEqual(subs.slice(1).map((s) => s.endpoint).sort());
  });

  it('needs a stream token, not a key', async () => {
    const subscription = push.subscribe();
    expect((await app.subscribe('', subscription)).status).toBe(401);
    expect((await app.subscribe(app.config.API_KEY, subscription)).status).toBe(403);
  });
});

describe('bad subscriptions are refused with 400 and never fetched', () => {
  const keys = () => push.subscribe().keys;

  it('refuses endpoints that are not https, and malformed or missing keys, even with private endpoints allowed', async () => {
    const token = await app.token('bad-shape');
    const cases: Array<[string, unknown]> = [
      ['http endpoint', { endpoint: `http://127.0.0.1:${portOf(httpTrap)}/push/x`, keys: keys() }],
      ['not a URL', { endpoint: 'push service please', keys: keys() }],
      ['credentials in the URL', { endpoint: `https://user:pw@127.0.0.1:${portOf(httpsTrap)}/push/x`, keys: keys() }],
      ['no keys', { endpoint: `https://127.0.0.1:${portOf(httpsTrap)}/push/x` }],
      ['no auth', { endpoint: `https://127.0.0.1:${portOf(httpsTrap)}/push/x`, keys: { p256dh: keys().p256dh } }],
      ['short p256dh', { endpoint: `https://127.0.0.1:${portOf(httpsTrap)}/push/x`, keys: { ...keys(), p256dh: 'AAAA' } }],
      ['auth of 8 bytes', { endpoint: `https://127.0.0.1:${portOf(httpsTrap)}/push/x`, keys: { ...keys(), auth: 'AAAAAAAAAAA' } }],
      ['p256dh not a point', { endpoint: `https://127.0.0.1:${portOf(httpsTrap)}/push/x`, keys: { ...keys(), p256dh: Buffer.alloc(65, 7).toString('base64url') } }],
    ];
    for (const [what, body] of cases) {
      const res = await app.subscribe(token, body);
      expect(res.status, what).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, what).toMatch(/^PB_ERR_(VALIDATION|PUSH_ENDPOINT_REFUSED)$/);
    }
    expect(await app.subscriptions(token)).toEqual([]);
    expect(trapped).toBe(0);
  });

  it('refuses loopback, private and link-local endpoints, and ports other than 443, without PUSH_ALLOW_PRIVATE_ENDPOINTS', async () => {
    const token = await strict.token('bad-address');
    const endpoints = [
      push.subscribe().endpoint, // https://127.0.0.1:<port>/push/…, a real push service
      `https://127.0.0.1/push/x`,
      `https://localhost/push/x`, // a name that resolves to loopback
      `https://[::1]/push/x`,
      `https://[::ffff:7f00:1]/push/x`, // 127.0.0.1, IPv4-mapped
      `https://10.1.2.3/push/x`,
      `https://192.168.0.10/push/x`,
      `https://169.254.169.254/latest/meta-data`, // cloud metadata
      `https://[fe80::1]/push/x`,
      `https://push.example.com:8443/push/x`,
    ];
    for (const endpoint of endpoints) {
      const res = await strict.subscribe(token, { endpoint, keys: keys() });
      expect(res.status, endpoint).toBe(400);
      expect(await res.json(), endpoint).toMatchObject({ error: { code: 'PB_ERR_PUSH_ENDPOINT_REFUSED' } });
    }
    expect(await strict.subscriptions(token)).toEqual([]);
    expect(push.received).toEqual([]);
    expect(trapped).toBe(0);
  });

  it('checks again at send time: a stored endpoint that is private now is not fetched, and is deleted', async () => {
    // Stored through the node that allows loopback, then that node goes: the strict one sends.
    const lenient = await startPushApp(redis.url, { ca: push.ca, overrides: { KEY_PREFIX: 'strict' } });
    const subscription = push.subscribe();
    await lenient.subscribedUser('rebound', subscription);
    await lenient.close();
    const token = await strict.token('rebound');
    expect(await strict.subscriptions(token)).toHaveLength(1);

    const id = await strict.enqueue('rebound', { text: 'to a private address' }, { push: { title: 'nope' } });
    expect(await finishedCheck(strict, 'rebound', id)).toMatchObject({ result: 'pushed', blocked: 1, sent: 0, retrying: 0 });
    expect(push.received.filter((r) => r.subscriptionId === push.idOf(subscription))).toEqual([]);
    expect(await strict.subscriptions(token)).toEqual([]);
    expect(await metric(strict, 'postbox_push_failed_total', 'reason="blocked"')).toBe(1);
  });
});

describe('with push off (no VAPID keys)', () => {
  it('answers 404 PB_ERR_PUSH_DISABLED and still takes messages with a push option', async () => {
    const token = await off.token('nopush');
    for (const res of [await fetch(`${off.url}/v1/push/public-key`), await fetch(`${off.url}/v1/push/subscriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(push.subscribe()),
    })]) {
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'PB_ERR_PUSH_DISABLED' } });
    }
    expect(await off.enqueue('nopush', 'stored', { push: { title: 'kept, never pushed' } })).toMatch(/^\d+-\d+$/);
    expect(off.postbox.queues.map((q) => q.name)).not.toContain('push');
  });
});
