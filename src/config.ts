import { randomBytes } from 'node:crypto';
import { z } from 'zod';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

/**
 * Every setting postbox reads, with its default. `loadConfig` is the only
 * reader of `process.env` in the project; everything else receives a `Config`.
 */
const schema = z.object({
  /** @defaultValue 'development' */
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  /** TCP port of the HTTP server. @defaultValue 8080 */
  PORT: int(0, 65535).default(8080),
  /**
   * Address to listen on. Development listens on loopback only: the demo there lets anyone who
   * reaches the port act as any user. @defaultValue '0.0.0.0' (every interface) in production,
   * '127.0.0.1' otherwise
   */
  HOST: z.string().min(1).optional(),
  /**
   * Redis to use: a `redis://` or `rediss://` URL, a unix socket path, or `embedded` (a private
   * redis-server from PATH, append-only under DATA_DIR). When absent: `embedded` if redis-server
   * is on PATH; else, outside production, the Redis on 127.0.0.1:6379 if one answers, with a
   * warning (it is nobody's configuration: its persistence is unknown and it is shared).
   * @defaultValue embedded
   */
  REDIS_URL: z
    .string()
    .regex(/^(rediss?:\/\/|\/|embedded$)/, 'must be a redis:// or rediss:// URL, a unix socket path, or "embedded"')
    .optional(),
  /**
   * Seed nodes of a Redis Cluster, comma-separated `host:port`; with it, REDIS_URL is not used
   * and every connection (commands, pub/sub, BullMQ) is a cluster client.
   * @defaultValue none: one Redis
   */
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(
      /^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/,
      'must be comma-separated host:port seeds, e.g. 10.0.0.1:6379,10.0.0.2:6379',
    )
    .optional(),
  /**
   * Prefix of every Redis key. No braces: postbox hash-tags its keys itself (every key of a user
   * by `{<userId>}`, BullMQ's by `{<KEY_PREFIX>}`); a brace here would put every user in one slot.
   * @defaultValue 'pb'
   */
  KEY_PREFIX: z
    .string()
    .regex(
      /^[A-Za-z0-9_.-]{1,32}$/,
      'must be 1 to 32 of A-Z a-z 0-9 _ . - (no braces: postbox hash-tags its keys for a Redis Cluster itself)',
    )
    .default('pb'),
  /**
   * '1': run on a Redis that keeps nothing on disk (appendonly no and no save points), where
   * every message is lost on a Redis restart. Production refuses such a Redis without it.
   * @defaultValue off
   */
  ALLOW_VOLATILE_REDIS: z
    .enum(['0', '1', 'true', 'false'])
    .transform((v) => v === '1' || v === 'true')
    .default(false),
  /** A Redis command with no reply after this long fails (the request answers 503), ms. @defaultValue 5000 */
  REDIS_COMMAND_TIMEOUT_MS: int(50, 600_000).default(5000),
  /** Bearer key of producer routes. Generated in development. */
  API_KEY: z.string().min(16).optional(),
  /** Bearer key of admin routes. Generated in development. */
  ADMIN_KEY: z.string().min(16).optional(),
  /** HS256 secret of stream tokens. Generated in development. */
  TOKEN_SECRET: z.string().min(32).optional(),
  /** Worst-case delay between an enqueue and its delivery; enqueues for connected users wake the drain at once. @defaultValue 1000 */
  DRAIN_INTERVAL_MS: int(10, 60_000).default(1000),
  /** A message written but not acked within this time is delivered again. @defaultValue 30000 */
  ACK_TIMEOUT_MS: int(100, 86_400_000).default(30_000),
  /** Messages in flight (written, not acked) per user. @defaultValue 100 */
  MAX_INFLIGHT: int(1, 10_000).default(100),
  /**
   * Deliveries of one message before it becomes a dead letter. A delivery counts when the page
   * had the message and did not handle it: its handler failed (the client library reports it),
   * or the ack timeout passed while the page acked other messages. @defaultValue 5
   */
  MAX_DELIVERIES: int(1, 1000).default(5),
  /**
   * Writes of one message of any kind (counted or not: reconnects, streams nobody read) before
   * it becomes a dead letter, so a message that crashes its page cannot cycle forever.
   * @defaultValue 4 × MAX_DELIVERIES
   */
  MAX_ATTEMPTS: int(1, 100_000).optional(),
  /**
   * '1': a reconnect's Last-Event-ID (or `?lastEventId=`) acks every message written up to it, as
   * plain EventSource pages that never ack would want. Off by default: the browser sends the last
   * id it received, not the last one its handler finished, so this can ack unhandled mail.
   * @defaultValue off
   */
  LAST_EVENT_ID_ACKS: z
    .enum(['0', '1', 'true', 'false'])
    .transform((v) => v === '1' || v === 'true')
    .default(false),
  /** Interval of `: ping` comments on open streams. @defaultValue 15000 */
  HEARTBEAT_MS: int(1000, 300_000).default(15_000),
  /** Reconnection delay sent to browsers in the `retry:` field. @defaultValue 2000 */
  RETRY_MS: int(0, 600_000).default(2000),
  /** Largest accepted request body, in bytes. @defaultValue 1048576 */
  BODY_MAX_BYTES: int(256, 64 * 1024 * 1024).default(1024 * 1024),
  /** Largest accepted message (its `data` as JSON), in bytes. @defaultValue 65536 */
  MESSAGE_MAX_BYTES: int(16, 16 * 1024 * 1024).default(64 * 1024),
  /** Messages held per user (waiting plus in flight); beyond it enqueue answers 429. @defaultValue 10000 */
  QUEUE_MAX_LENGTH: int(1, 10_000_000).default(10_000),
  /** Open streams per user on one node; one more answers 429. @defaultValue 10 */
  MAX_STREAMS_PER_USER: int(1, 1000).default(10),
  /** How long an idempotency `key` is remembered. @defaultValue 86400000 (24 h) */
  DEDUP_WINDOW_MS: int(1000, 30 * 86_400_000).default(86_400_000),
  /** Lifetime of a stream token when the request does not say. @defaultValue 3600 */
  TOKEN_TTL_SECONDS: int(10, 30 * 86_400).default(3600),
  /** Dead letters kept per user; the oldest are trimmed beyond it. @defaultValue 1000 */
  DEAD_MAX_LENGTH: int(1, 1_000_000).default(1000),
  /** A stream whose socket buffer stays full this long is closed; its messages are redelivered. @defaultValue 10000 */
  WRITE_STALL_MS: int(100, 600_000).default(10_000),
  /** Period of the housekeeping job that drops messages past their TTL from mailboxes nobody drains. @defaultValue 60000 */
  HOUSEKEEPING_INTERVAL_MS: int(100, 86_400_000).default(60_000),
  /** Room members appended per pipelined round trip of a fan-out job. @defaultValue 500 */
  FANOUT_CHUNK_SIZE: int(1, 10_000).default(500),
  /** How long a fan-out remembers which members it already delivered to, for retries; bounds Redis memory. @defaultValue 3600000 (1 h) */
  FANOUT_DEDUP_WINDOW_MS: int(1000, 30 * 86_400_000).default(3_600_000),
  /** BullMQ job lock; a job of a dead node is taken over by another within about twice this. @defaultValue 30000 */
  JOB_LOCK_MS: int(200, 600_000).default(30_000),
  /** Where the embedded redis-server keeps its append-only file. @defaultValue './data' */
  DATA_DIR: z.string().min(1).default('./data'),
  /** Users one admin listing (sorted by backlog or age) or stats request reads from the users index at most. @defaultValue 10000 */
  ADMIN_SCAN_MAX_USERS: int(100, 1_000_000).default(10_000),
  /**
   * Serves the demo chat at `/demo`, whose backend hands out tokens and sends messages for any
   * name typed in, with no login: never on a public server. '1'/'true' or '0'/'false'.
   * @defaultValue on when NODE_ENV is development, off otherwise
   */
  DEMO: z
    .enum(['0', '1', 'true', 'false'])
    .transform((v) => v === '1' || v === 'true')
    .optional(),
  /**
   * Origins whose pages may open streams and send acks (CORS), comma-separated,
   * or `*`. Subscriber routes authenticate with a token, never a cookie, so `*`
   * exposes nothing a token does not already grant. @defaultValue '*'
   */
  CORS_ORIGINS: z
    .string()
    .regex(/^(\*|https?:\/\/[^,\s]+(,https?:\/\/[^,\s]+)*)$/, 'must be * or comma-separated http(s) origins')
    .default('*'),
  /**
   * PEM certificate (with its chain) for HTTPS; give TLS_KEY_FILE with it. With both, the node
   * serves HTTP/2 and HTTP/1.1 over TLS, so a browser multiplexes every tab's stream over one
   * connection instead of hitting its 6-connections-per-origin limit of HTTP/1.1.
   * @defaultValue none: plain HTTP/1.1
   */
  TLS_CERT_FILE: z.string().min(1).optional(),
  /** PEM private key of TLS_CERT_FILE. @defaultValue none */
  TLS_KEY_FILE: z.string().min(1).optional(),
  /** @defaultValue 'info' */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type RawConfig = z.infer<typeof schema>;

/** The validated configuration, with keys always present. */
export interface Config extends Omit<RawConfig, 'API_KEY' | 'ADMIN_KEY' | 'TOKEN_SECRET' | 'DEMO' | 'MAX_ATTEMPTS' | 'HOST'> {
  /** Resolved from HOST and NODE_ENV. */
  HOST: string;
  MAX_ATTEMPTS: number;
  /** Whether `/demo` is served; resolved from DEMO and NODE_ENV. */
  DEMO: boolean;
  API_KEY: string;
  ADMIN_KEY: string;
  TOKEN_SECRET: string;
}

export interface LoadedConfig {
  config: Config;
  /** Names of the keys generated for development, to print once. */
  generated: Array<'API_KEY' | 'ADMIN_KEY' | 'TOKEN_SECRET'>;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Validates the environment once. In production the three secrets are
 * required; elsewhere missing ones are generated so `npm start` needs nothing.
 */
export function loadConfig(env: Record<string, string | undefined>): LoadedConfig {
  // An empty variable (`PORT=` in a .env file) means "use the default".
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const raw = parsed.data;
  const secrets = ['API_KEY', 'ADMIN_KEY', 'TOKEN_SECRET'] as const;
  const missing = secrets.filter((name) => raw[name] === undefined);
  if (raw.NODE_ENV === 'production' && missing.length > 0) {
    throw new ConfigError(`NODE_ENV=production requires ${missing.join(', ')}`);
  }
  if ((raw.TLS_CERT_FILE === undefined) !== (raw.TLS_KEY_FILE === undefined)) {
    throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together: set both (HTTPS) or neither (HTTP)');
  }
  const generate = () => randomBytes(24).toString('base64url');
  const config: Config = {
    ...raw,
    API_KEY: raw.API_KEY ?? generate(),
    ADMIN_KEY: raw.ADMIN_KEY ?? generate(),
    TOKEN_SECRET: raw.TOKEN_SECRET ?? generate() + generate(),
    DEMO: raw.DEMO ?? raw.NODE_ENV === 'development',
    HOST: raw.HOST ?? (raw.NODE_ENV === 'production' ? '0.0.0.0' : '127.0.0.1'),
    MAX_ATTEMPTS: Math.max(raw.MAX_ATTEMPTS ?? 4 * raw.MAX_DELIVERIES, raw.MAX_DELIVERIES),
  };
  return { config, generated: missing };
}

/** A configuration for tests and tools: defaults plus overrides, no environment. */
export function testConfig(overrides: Partial<Record<keyof RawConfig, string | number>> = {}): Config {
  const env = Object.fromEntries(Object.entries(overrides).map(([k, v]) => [k, String(v)]));
  return loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env }).config;
}
