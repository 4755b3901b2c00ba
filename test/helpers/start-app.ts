import { pino } from 'pino';
import { testConfig, type Config, type RawConfig } from '../../src/config.js';
import { createPostbox, type Postbox } from '../../src/postbox.js';

export type Overrides = Partial<Record<keyof RawConfig, string | number>>;

export interface TestApp {
  node: Postbox;
  config: Config;
  url: string;
  /** Calls the API with the producer key. */
  produce(path: string, body: unknown, init?: RequestInit): Promise<Response>;
  /** Any method on a producer route, with a JSON body when given. */
  call(method: string, path: string, body?: unknown): Promise<Response>;
  /** The stream URL for a token. */
  streamUrl(token: string): string;
  /** Enqueues one message and returns its id. */
  enqueue(userId: string, data: unknown, extra?: Record<string, unknown>): Promise<string>;
  token(userId: string, ttlSeconds?: number): Promise<string>;
  admin(path: string, init?: RequestInit): Promise<Response>;
  ack(token: string, ids: string[]): Promise<Response>;
  close(): Promise<void>;
}

/** A whole postbox node against `redisUrl`, listening on port 0, or on `overrides.PORT` (to restart a node in place). */
export async function startApp(redisUrl: string, overrides: Overrides = {}): Promise<TestApp> {
  const config = testConfig({
    API_KEY: 'test-api-key-0123456789',
    ADMIN_KEY: 'test-admin-key-0123456789',
    TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
    ...overrides,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const node = await createPostbox(config, { redisUrl, logger });
  const url = await node.listen(Number(overrides.PORT ?? 0), '127.0.0.1');
  return buildClient(node, config, url);
}

export function buildClient(node: Postbox, config: Config, url: string): TestApp {
  const json = (key: string, body: unknown, init: RequestInit = {}): RequestInit => ({
    method: 'POST',
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const app: TestApp = {
    node,
    config,
    url,
    produce: (path, body, init) => fetch(url + path, json(config.API_KEY, body, init)),
    call: (method, path, body) =>
      fetch(url + path, {
        method,
        headers: { authorization: `Bearer ${config.API_KEY}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    streamUrl: (token) => `${url}/v1/stream?token=${encodeURIComponent(token)}`,
    async enqueue(userId, data, extra = {}) {
      const res = await app.produce(`/v1/users/${encodeURIComponent(userId)}/messages`, { data, ...extra });
      if (res.status !== 201 && res.status !== 200) throw new Error(`enqueue ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    },
    async token(userId, ttlSeconds) {
      const res = await app.produce('/v1/tokens', ttlSeconds === undefined ? { userId } : { userId, ttlSeconds });
      if (res.status !== 201) throw new Error(`token ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { token: string }).token;
    },
    admin: (path, init = {}) =>
      fetch(url + path, { ...init, headers: { authorization: `Bearer ${config.ADMIN_KEY}`, ...(init.headers ?? {}) } }),
    ack: (token, ids) => fetch(url + '/v1/acks', json(token, { ids })),
    close: () => node.close(),
  };
  return app;
}
