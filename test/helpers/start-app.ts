import type { Queue } from 'bullmq';
import { pino, type Logger } from 'pino';
import type { Clock } from '../../src/clock.js';
import { testConfig, type Config, type RawConfig } from '../../src/config.js';
import { createPostbox, type Postbox } from '../../src/postbox.js';
import { openSse, type SseReader } from './read-sse.js';
import { TEST_KEYS } from './test-keys.js';

export type Overrides = Partial<Record<keyof RawConfig, string | number>>;

/** A user's counts as the admin shows them; zeros for a user the admin does not know (404). */
export interface QueueCounts {
  waiting: number;
  inflight: number;
  dead: number;
  scheduled: number;
  connections: number;
}

export interface TestApp {
  /** The node itself: its hub of streams, its BullMQ queues, close(). */
  postbox: Postbox;
  config: Config;
  url: string;
  /** Calls the API with the producer key. */
  produce(path: string, body: unknown, init?: RequestInit): Promise<Response>;
  /** Any method on a producer route, with a JSON body when given. */
  call(method: string, path: string, body?: unknown): Promise<Response>;
  /** The stream URL for a token. */
  streamUrl(token: string): string;
  /**
   * Opens the SSE stream of `userId` with a fresh token (or the given one); the reader
   * is closed by close() at the latest.
   */
  openStream(userId: string, options?: { token?: string; lastEventId?: string; headers?: Record<string, string> }): Promise<SseReader>;
  /** Enqueues one message and returns its id. */
  enqueue(userId: string, data: unknown, extra?: Record<string, unknown>): Promise<string>;
  token(userId: string, ttlSeconds?: number): Promise<string>;
  admin(path: string, init?: RequestInit): Promise<Response>;
  ack(token: string, ids: string[]): Promise<Response>;
  /** Reports these ids as not handled (`POST /v1/nacks`, reason `failed` unless given). */
  nack(token: string, ids: string[], reason?: 'failed' | 'unhandled'): Promise<Response>;
  counts(userId: string): Promise<QueueCounts>;
  /** The value of one series of `GET /metrics`, e.g. `postbox_streams_closed_total{reason="write stalled"}`; undefined when absent. */
  metric(series: string): Promise<number | undefined>;
  /** One of the node's BullMQ queues: 'scheduled', 'fanout' or 'housekeeping'. */
  queue(name: string): Queue;
  /** Closes the streams opened with openStream, then the node. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** @defaultValue silent, or TEST_LOG_LEVEL to stdout */
  logger?: Logger;
  /** @defaultValue the system clock */
  clock?: Clock;
}

/**
 * A whole postbox node against `redisUrl`, listening on port 0, or on
 * `overrides.PORT` (to restart a node in place). Most tests get one through
 * useNode (use-node.ts) instead, which also stops it.
 */
export async function startApp(redisUrl: string, overrides: Overrides = {}, options: StartOptions = {}): Promise<TestApp> {
  const config = testConfig({ ...TEST_KEYS, ...overrides });
  const logger = options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const node = await createPostbox(config, { redisUrl, logger, ...(options.clock ? { clock: options.clock } : {}) });
  let url: string;
  try {
    url = await node.listen(Number(overrides.PORT ?? 0), '127.0.0.1');
  } catch (err) {
    await node.close(); // its Redis connections and workers, or the test process never exits
    throw err;
  }
  return buildClient(node, config, url);
}

export function buildClient(postbox: Postbox, config: Config, url: string): TestApp {
  const readers = new Set<SseReader>();
  const json = (key: string, body: unknown, init: RequestInit = {}): RequestInit => ({
    method: 'POST',
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const app: TestApp = {
    postbox,
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
    async openStream(userId, options = {}) {
      const { token = await app.token(userId), ...rest } = options;
      const reader = await openSse(app.streamUrl(token), rest);
      readers.add(reader);
      return reader;
    },
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
    nack: (token, ids, reason = 'failed') => fetch(url + '/v1/nacks', json(token, { ids, reason })),
    async counts(userId) {
      const res = await app.admin(`/admin/queues/${encodeURIComponent(userId)}`);
      if (res.status === 404) return { waiting: 0, inflight: 0, dead: 0, scheduled: 0, connections: 0 };
      if (res.status !== 200) throw new Error(`admin view of ${userId}: ${res.status} ${await res.text()}`);
      const { waiting, inflight, dead, scheduled, connections } = (await res.json()) as QueueCounts;
      return { waiting, inflight, dead, scheduled, connections };
    },
    async metric(series) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    },
    queue(name) {
      const queue = postbox.queues.find((q) => q.name === name);
      if (queue === undefined) throw new Error(`no BullMQ queue named ${name}`);
      return queue;
    },
    async close() {
      for (const reader of readers) reader.close();
      readers.clear();
      await postbox.close();
    },
  };
  return app;
}
