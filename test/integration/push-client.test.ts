import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushSubscriptionLike, ServiceWorkerRegistrationLike } from '../../src/client/postbox.js';
import { importBuiltClient } from '../helpers/built-client.js';
import { startPushService, type TestPushService } from '../helpers/push-service.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startPushApp, testVapid, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// subscribePush / unsubscribePush of the built client against a real node. Node has no
// PushManager, so the registration below stands in for the browser's: it subscribes at the
// loopback test push service, restricted to the applicationServerKey it is given (RFC 8292 §4),
// so a push signed with any other VAPID key is refused there, as a browser's push service would.

let redis: TestRedis;
let push: TestPushService;
let app: PushTestApp;
let off: TestApp;
let client: Awaited<ReturnType<typeof importBuiltClient>>;

beforeAll(async () => {
  client = await importBuiltClient();
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_AFTER_MS: 100 } });
  off = await startApp(redis.url, { KEY_PREFIX: 'off' });
});
afterAll(async () => {
  await Promise.allSettled([app?.close(), off?.close()]);
  await push?.close();
  await redis?.stop();
});

/** A browser's push registration, backed by the test push service. */
function registrationAtPushService(): ServiceWorkerRegistrationLike & { subscribed: () => PushSubscriptionLike | null; made: number } {
  let current: PushSubscriptionLike | null = null;
  const registration = {
    made: 0,
    active: null,
    subscribed: () => current,
    pushManager: {
      getSubscription: async () => current,
      async subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array<ArrayBuffer> }) {
        expect(options.userVisibleOnly).toBe(true);
        const key = Buffer.from(options.applicationServerKey).toString('base64url');
        current = subscriptionOf(push.subscribe({ applicationServerKey: key }), options.applicationServerKey, () => (current = null));
        registration.made += 1;
        return current;
      },
    },
  };
  return registration;
}

function subscriptionOf(json: ReturnType<TestPushService['subscribe']>, key: Uint8Array, gone: () => void): PushSubscriptionLike {
  return {
    endpoint: json.endpoint,
    options: { applicationServerKey: key.slice().buffer },
    toJSON: () => json,
    unsubscribe: async () => {
      gone();
      return true;
    },
  };
}

describe('subscribePush', () => {
  it('subscribes with postbox’s key, stores the subscription, and the user’s pushes reach it', async () => {
    const registration = registrationAtPushService();
    const token = await app.token('cli-ann');
    const handle = await client.subscribePush({ url: app.url, token, serviceWorker: { ready: Promise.resolve(registration) } });
    expect(handle.endpoint).toBe(registration.subscribed()?.endpoint);
    expect((await app.subscriptions(token)).map((s) => s.endpoint)).toEqual([handle.endpoint]);

    const id = await app.enqueue('cli-ann', { text: 'hi' }, { push: { title: 'Ann' } });
    const got = await push.waitFor((all) => all.some((r) => r.payload?.includes(id) === true));
    // The subscription is restricted to the key the browser subscribed with: the VAPID signature matched it.
    expect(got.find((r) => r.payload?.includes(id))).toMatchObject({ status: 201, vapid: { valid: true, key: testVapid.publicKey } });

    // Subscribing again keeps the browser's subscription and sends it again.
    await client.subscribePush({ url: app.url, token, serviceWorker: { ready: Promise.resolve(registration) } });
    expect(registration.made).toBe(1);
    expect(await app.subscriptions(token)).toHaveLength(1);

    await handle.unsubscribe();
    expect(registration.subscribed()).toBeNull();
    expect(await app.subscriptions(token)).toEqual([]);
    expect(await client.unsubscribePush({ url: app.url, token, serviceWorker: { ready: Promise.resolve(registration) } })).toBe(false);
  });

  it('replaces a subscription the browser holds for another key', async () => {
    const registration = registrationAtPushService();
    const other = webpush.generateVAPIDKeys();
    await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: Uint8Array.from(Buffer.from(other.publicKey, 'base64url')) });
    const stale = registration.subscribed()?.endpoint;
    const token = await app.token('cli-ben');
    const handle = await client.subscribePush({ url: app.url, getToken: () => token, serviceWorker: { ready: Promise.resolve(registration) } });
    expect(handle.endpoint).not.toBe(stale);
    expect((await app.subscriptions(token)).map((s) => s.endpoint)).toEqual([handle.endpoint]);
  });

  it('says so when Web Push is off on the server', async () => {
    const registration = registrationAtPushService();
    const token = await off.token('cli-cy');
    await expect(client.subscribePush({ url: off.url, token, serviceWorker: { ready: Promise.resolve(registration) } })).rejects.toMatchObject({
      name: 'PostboxError',
      code: 'PB_CLIENT_PUSH',
      status: 404,
    });
    expect(registration.made).toBe(0);
  });
});
