import { pino } from 'pino';
import webpush from 'web-push';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { buildClient, type Overrides, type TestApp } from './start-app.js';
import type { PushSubscriptionJson } from './push-service.js';

/** One VAPID pair for a test file, so several nodes on one Redis sign alike. */
export const testVapid = webpush.generateVAPIDKeys();

export interface PushTestApp extends TestApp {
  /** POST /v1/push/subscriptions with the user's stream token. */
  subscribe(token: string, subscription: unknown): Promise<Response>;
  /** DELETE /v1/push/subscriptions?endpoint= with the user's stream token. */
  unsubscribe(token: string, endpoint: string): Promise<Response>;
  /** GET /v1/push/subscriptions with the user's stream token. */
  subscriptions(token: string): Promise<Array<{ id: string; endpoint: string }>>;
  /** A user with a stream token and one subscription stored. */
  subscribedUser(userId: string, subscription: PushSubscriptionJson): Promise<string>;
}

/**
 * A postbox node with Web Push on: VAPID keys set, endpoints on loopback allowed (the test push
 * service listens on 127.0.0.1), and that service's certificate trusted for push requests.
 */
export async function startPushApp(redisUrl: string, options: { ca?: string; overrides?: Overrides } = {}): Promise<PushTestApp> {
  const config = testConfig({
    API_KEY: 'test-api-key-0123456789',
    ADMIN_KEY: 'test-admin-key-0123456789',
    TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
    VAPID_PUBLIC_KEY: testVapid.publicKey,
    VAPID_PRIVATE_KEY: testVapid.privateKey,
    VAPID_SUBJECT: 'mailto:ops@postbox.example',
    PUSH_ALLOW_PRIVATE_ENDPOINTS: 1,
    ...options.overrides,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const node = await createPostbox(config, { redisUrl, logger, ...(options.ca ? { pushCa: options.ca } : {}) });
  const url = await node.listen(0, '127.0.0.1');
  const app = buildClient(node, config, url);
  const withToken = (token: string, method: string, path: string, body?: unknown) =>
    fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const push: PushTestApp = {
    ...app,
    subscribe: (token, subscription) => withToken(token, 'POST', '/v1/push/subscriptions', subscription),
    unsubscribe: (token, endpoint) => withToken(token, 'DELETE', `/v1/push/subscriptions?endpoint=${encodeURIComponent(endpoint)}`),
    async subscriptions(token) {
      const res = await withToken(token, 'GET', '/v1/push/subscriptions');
      if (res.status !== 200) throw new Error(`subscriptions ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { subscriptions: Array<{ id: string; endpoint: string }> }).subscriptions;
    },
    async subscribedUser(userId, subscription) {
      const token = await app.token(userId);
      const res = await push.subscribe(token, subscription);
      if (res.status !== 201) throw new Error(`subscribe ${res.status}: ${await res.text()}`);
      return token;
    },
  };
  return push;
}
