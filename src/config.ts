import { createECDH, createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { z } from 'zod';

/** Webhook event types (WEBHOOK_EVENTS). */
export const WEBHOOK_EVENT_TYPES = ['message.acked', 'message.dead', 'message.expired', 'message.delivered'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
/** A rate per second: fractions allowed (0.5 is one every 2 s), 0 means no limit. */
const rate = (max: number) => z.coerce.number().finite().min(0).max(max);

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
  /**
   * A Redis command with no reply after this long fails, ms: the request answers 503
   * PB_ERR_OUTCOME_UNKNOWN (it was sent, so it may have been carried out). @defaultValue 5000
   */
  REDIS_COMMAND_TIMEOUT_MS: int(50, 600_000).default(5000),
  /** Bearer key of producer routes. Generated in development. */
  API_KEY: z.string().min(16).optional(),
  /** Bearer key of admin routes. Generated in development. */
  ADMIN_KEY: z.string().min(16).optional(),
  /** HS256 secret of stream tokens. Generated in development. */
  TOKEN_SECRET: z.string().min(32).optional(),
  /**
   * How often the drain looks at the ack deadlines of what this node wrote (redeliveries are due
   * then), ms. Enqueues for connected users wake the drain at once; a lost wake is caught by a
   * sweep of every connected user every 5 minutes, or at once when the pub/sub connection
   * comes back. @defaultValue 1000
   */
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
  /**
   * Open streams on one node, all users together; one more answers 429 PB_ERR_NODE_STREAMS_FULL.
   * Counted per node because what it protects is the node's own memory and sockets.
   * @defaultValue 20000
   */
  MAX_STREAMS_PER_NODE: int(1, 10_000_000).default(20_000),
  /**
   * Streams one client address may open on one node per STREAM_OPENS_WINDOW_MS, valid token or
   * not; beyond it 429 PB_ERR_STREAM_OPENS_LIMITED. A reload loop or a flood is stopped; a whole
   * office behind one NAT reconnecting after a restart is not. IPv6 addresses count by their /64.
   * 0: no limit. @defaultValue 1000
   */
  STREAM_OPENS_PER_ADDRESS: int(0, 10_000_000).default(1000),
  /** Window of STREAM_OPENS_PER_ADDRESS, ms. @defaultValue 10000 */
  STREAM_OPENS_WINDOW_MS: int(1000, 3_600_000).default(10_000),
  /**
   * Proxies in front of postbox that append to X-Forwarded-For: the client address is taken that
   * many entries from the right (and the scheme from X-Forwarded-Proto). 0: the socket's address,
   * X-Forwarded-* ignored (anyone could send them). Behind a load balancer without it, every
   * client has the balancer's address, and STREAM_OPENS_PER_ADDRESS limits them all together.
   * @defaultValue 0
   */
  TRUST_PROXY_HOPS: int(0, 16).default(0),
  /**
   * Messages the API key may enqueue per second, all nodes together (a token bucket in Redis).
   * A batch takes one token per message, any other producer call one. Fractions allowed; 0: no limit.
   * @defaultValue 50000 (above what one node handles, so it only stops a runaway producer)
   */
  RATE_LIMIT_KEY_PER_SECOND: rate(100_000_000).default(50_000),
  /** Tokens the API key's bucket holds: the largest burst. At least RATE_LIMIT_KEY_PER_SECOND. @defaultValue 100000 */
  RATE_LIMIT_KEY_BURST: int(1, 1_000_000_000).default(100_000),
  /**
   * Messages per second for one user, all nodes together (a token bucket in Redis per user);
   * beyond it 429 PB_ERR_USER_RATE_LIMITED. Fractions allowed; 0: no limit. @defaultValue 100
   */
  RATE_LIMIT_USER_PER_SECOND: rate(10_000_000).default(100),
  /**
   * Tokens a user's bucket holds: the largest burst for one user. At least
   * RATE_LIMIT_USER_PER_SECOND; a batch holding more messages for one user than this is refused.
   * @defaultValue 1000 (a full batch for one user)
   */
  RATE_LIMIT_USER_BURST: int(1, 100_000_000).default(1000),
  /**
   * How long a client may take to send a request's headers, ms; a slow-header client (slowloris)
   * is cut then with 408. Checked about every tenth of the shorter of the two timeouts.
   * @defaultValue 10000
   */
  HTTP_HEADERS_TIMEOUT_MS: int(100, 600_000).default(10_000),
  /**
   * How long a client may take to send a whole request (headers and body), ms. It ends when the
   * request is received, so an event stream (a response) lasts as long as it likes.
   * @defaultValue 30000
   */
  HTTP_REQUEST_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  /**
   * How long an idle keep-alive connection is kept open between requests, ms. Behind a load
   * balancer, make it longer than the balancer's own idle timeout. @defaultValue 5000
   */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100, 600_000).default(5000),
  /**
   * Connections the kernel holds for the node before it accepts them. Every page reconnects at
   * once after a restart or a network blip: with Node's default (511) a storm of a few thousand
   * overflowed it and some connections were reset. The kernel caps it at net.core.somaxconn.
   * @defaultValue 4096
   */
  HTTP_LISTEN_BACKLOG: int(1, 65_535).default(4096),
  /**
   * Connections the node accepts at once (HTTP/1.1: each stream is one; HTTP/2: one per browser);
   * past it a new connection is closed at once. @defaultValue MAX_STREAMS_PER_NODE + 1000
   */
  HTTP_MAX_CONNECTIONS: int(1, 10_000_000).optional(),
  /**
   * After SIGTERM or SIGINT, how long the graceful close may take before the process logs so and
   * exits with code 1, ms. The close waits for the drain pass under way, for the jobs the workers
   * are running (a webhook or push send: up to WEBHOOK_TIMEOUT_MS, PUSH_TIMEOUT_MS) and up to 5 s
   * for requests under way; keep it below the orchestrator's own deadline (Kubernetes sends
   * SIGKILL after terminationGracePeriodSeconds, 30 s by default) so that line is written.
   * @defaultValue 25000
   */
  SHUTDOWN_TIMEOUT_MS: int(1000, 3_600_000).default(25_000),
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
  /**
   * How long an acked, expired or dead message keeps its receipt for the status API
   * (`GET /v1/users/:userId/messages/:id`), ms; 0 keeps none (status then knows only
   * scheduled, waiting and in-flight messages). @defaultValue 86400000 (24 h)
   */
  RECEIPT_RETENTION_MS: int(0, 30 * 86_400_000).default(86_400_000),
  /** Receipts kept per user; beyond it the oldest go first. @defaultValue 10000 */
  RECEIPTS_MAX_PER_USER: int(1, 1_000_000).default(10_000),
  /**
   * Where postbox POSTs webhook batches (message.acked, message.dead, …), signed as Standard
   * Webhooks say. @defaultValue none: no webhooks
   */
  WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  /**
   * Signing secret of the webhooks, `whsec_<base64>` (Standard Webhooks). Required with
   * WEBHOOK_URL in production; in development it is derived from TOKEN_SECRET, so it stays the
   * same across restarts (src/config.ts `webhookSecret`).
   */
  WEBHOOK_SECRET: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/, 'must be whsec_ followed by a base64 key of at least 16 bytes')
    .optional(),
  /**
   * Events sent to WEBHOOK_URL, comma-separated: message.acked, message.dead, message.expired,
   * message.delivered (the first write of a message to a stream).
   * @defaultValue 'message.acked,message.dead,message.expired'
   */
  WEBHOOK_EVENTS: z
    .string()
    .default('message.acked,message.dead,message.expired')
    .transform((text) => text.split(',').map((e) => e.trim()).filter((e) => e !== ''))
    .pipe(z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1, 'name at least one event')),
  /** A webhook request with no answer after this long fails (and is retried), ms. @defaultValue 10000 */
  WEBHOOK_TIMEOUT_MS: int(100, 120_000).default(10_000),
  /** Tries of one webhook batch before it is given up (kept in the failed jobs, counted). @defaultValue 10 */
  WEBHOOK_MAX_ATTEMPTS: int(1, 100).default(10),
  /**
   * First retry delay of a webhook batch, doubled on each retry, ms; a receiver's Retry-After on
   * a 429 or 503 makes a retry wait longer, up to an hour. @defaultValue 1000
   */
  WEBHOOK_BACKOFF_MS: int(10, 3_600_000).default(1000),
  /**
   * Webhook batches waiting to be sent (queued, retrying or under way) beyond which new events
   * are dropped and counted (`postbox_webhooks_events_dropped_total`), so a receiver that is down
   * for long cannot grow Redis without bound. @defaultValue 1000 (up to 100,000 events)
   */
  WEBHOOK_MAX_BACKLOG: int(1, 1_000_000).default(1000),
  /**
   * VAPID key pair of Web Push (RFC 8292): the uncompressed P-256 public key, base64url (65 bytes),
   * as `npx web-push generate-vapid-keys` prints it. Give all three VAPID_* or none: with none,
   * push is off (in development a pair is generated and kept in DATA_DIR/dev-keys.json).
   * @defaultValue none: push off, except in development
   */
  VAPID_PUBLIC_KEY: z.string().regex(/^[A-Za-z0-9_-]{80,100}$/, 'must be a base64url P-256 public key (87 characters)').optional(),
  /** The private half of VAPID_PUBLIC_KEY, base64url (32 bytes). */
  VAPID_PRIVATE_KEY: z.string().regex(/^[A-Za-z0-9_-]{40,50}$/, 'must be a base64url P-256 private key (43 characters)').optional(),
  /** Who push services may contact about this sender (RFC 8292 §2.1): a `mailto:` or `https:` URL. */
  VAPID_SUBJECT: z.string().regex(/^(mailto:[^\s]+|https:\/\/[^\s]+)$/, 'must be a mailto: or https: URL').optional(),
  /**
   * A message with a `push` option is sent by Web Push once it has waited this long while the
   * user has no open stream (or sits in flight past one ack timeout with no ack), ms. @defaultValue 10000
   */
  PUSH_AFTER_MS: int(0, 86_400_000).default(10_000),
  /** Push subscriptions kept per user; a new one beyond it replaces the oldest. @defaultValue 10 */
  PUSH_MAX_SUBSCRIPTIONS_PER_USER: int(1, 1000).default(10),
  /**
   * '1': accept push endpoints on private, loopback or link-local addresses and on ports other
   * than 443. For tests with a push service on loopback only: it lets any user make postbox send
   * requests into its own network. @defaultValue off
   */
  PUSH_ALLOW_PRIVATE_ENDPOINTS: z
    .enum(['0', '1', 'true', 'false'])
    .transform((v) => v === '1' || v === 'true')
    .default(false),
  /** Lifetime of the ack credential a push carries (it acks that one message only), s. @defaultValue 3600 */
  PUSH_ACK_TTL_SECONDS: int(1, 30 * 86_400).default(3600),
  /** TTL (RFC 8030 §5.2) of the push of a message without `ttlMs`, s; with one, what is left of it. @defaultValue 86400 */
  PUSH_TTL_SECONDS: int(0, 28 * 86_400).default(86_400),
  /** A push service that sends nothing for this long fails the attempt (it is retried), ms. @defaultValue 10000 */
  PUSH_TIMEOUT_MS: int(100, 600_000).default(10_000),
  /** Pushes sent at once by this node. @defaultValue 50 */
  PUSH_CONCURRENCY: int(1, 1000).default(50),
  /** @defaultValue 'info' */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type RawConfig = z.infer<typeof schema>;

/** The name of every variable postbox reads. */
export const CONFIG_VARIABLES = Object.keys(schema.shape) as Array<keyof RawConfig>;

/** The validated configuration, with keys always present. */
export interface Config
  extends Omit<RawConfig, 'API_KEY' | 'ADMIN_KEY' | 'TOKEN_SECRET' | 'DEMO' | 'MAX_ATTEMPTS' | 'HTTP_MAX_CONNECTIONS' | 'HOST'> {
  /** Resolved from HOST and NODE_ENV. */
  HOST: string;
  MAX_ATTEMPTS: number;
  HTTP_MAX_CONNECTIONS: number;
  /** Whether Web Push is on: the three VAPID_* are set (or were generated for development). */
  PUSH_ENABLED: boolean;
  /** The VAPID pair was generated for development; src/dev-keys.ts keeps it in DATA_DIR. */
  VAPID_GENERATED: boolean;
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
  if (raw.NODE_ENV === 'production' && raw.WEBHOOK_URL !== undefined && raw.WEBHOOK_SECRET === undefined) {
    throw new ConfigError('WEBHOOK_URL requires WEBHOOK_SECRET (whsec_<base64>) in production');
  }
  for (const who of ['KEY', 'USER'] as const) {
    const rate = raw[`RATE_LIMIT_${who}_PER_SECOND`];
    const burst = raw[`RATE_LIMIT_${who}_BURST`];
    if (rate > 0 && burst < rate) {
      throw new ConfigError(`RATE_LIMIT_${who}_BURST (${burst}) must be at least RATE_LIMIT_${who}_PER_SECOND (${rate})`);
    }
  }
  if (raw.HTTP_HEADERS_TIMEOUT_MS > raw.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError('HTTP_HEADERS_TIMEOUT_MS must not be longer than HTTP_REQUEST_TIMEOUT_MS (headers are part of the request)');
  }
  const vapid = resolveVapid(raw);
  const generate = () => randomBytes(24).toString('base64url');
  const config: Config = {
    ...raw,
    ...vapid,
    API_KEY: raw.API_KEY ?? generate(),
    ADMIN_KEY: raw.ADMIN_KEY ?? generate(),
    TOKEN_SECRET: raw.TOKEN_SECRET ?? generate() + generate(),
    DEMO: raw.DEMO ?? raw.NODE_ENV === 'development',
    HOST: raw.HOST ?? (raw.NODE_ENV === 'production' ? '0.0.0.0' : '127.0.0.1'),
    MAX_ATTEMPTS: Math.max(raw.MAX_ATTEMPTS ?? 4 * raw.MAX_DELIVERIES, raw.MAX_DELIVERIES),
    HTTP_MAX_CONNECTIONS: raw.HTTP_MAX_CONNECTIONS ?? raw.MAX_STREAMS_PER_NODE + 1000,
  };
  return { config, generated: missing };
}

const VAPID_NAMES = ['VAPID_PUBLIC_KEY', 'VAPID_PRIVATE_KEY', 'VAPID_SUBJECT'] as const;
/** The subject of development VAPID keys: push services only read it to contact a sender. */
const DEVELOPMENT_VAPID_SUBJECT = 'mailto:postbox@localhost';

/**
 * Web Push is on when the three VAPID_* are set, and off when none is; a partial set is a
 * mistake worth stopping for. In development a missing set is generated (and kept by
 * src/dev-keys.ts), so the demo can push with no configuration.
 */
function resolveVapid(raw: RawConfig): Pick<Config, 'PUSH_ENABLED' | 'VAPID_GENERATED' | (typeof VAPID_NAMES)[number]> {
  const set = VAPID_NAMES.filter((name) => raw[name] !== undefined);
  if (set.length === 0) {
    if (raw.NODE_ENV !== 'development') return { PUSH_ENABLED: false, VAPID_GENERATED: false };
    return { ...generateVapidKeys(), VAPID_SUBJECT: DEVELOPMENT_VAPID_SUBJECT, PUSH_ENABLED: true, VAPID_GENERATED: true };
  }
  if (set.length < VAPID_NAMES.length) {
    const missing = VAPID_NAMES.filter((name) => raw[name] === undefined);
    throw new ConfigError(`Web Push needs VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_SUBJECT together: ${missing.join(', ')} missing (or unset all three: push off)`);
  }
  const publicKey = raw.VAPID_PUBLIC_KEY as string;
  const privateKey = raw.VAPID_PRIVATE_KEY as string;
  if (!vapidPairMatches(publicKey, privateKey)) {
    throw new ConfigError('VAPID_PUBLIC_KEY is not the public key of VAPID_PRIVATE_KEY (both base64url, P-256)');
  }
  return { VAPID_PUBLIC_KEY: publicKey, VAPID_PRIVATE_KEY: privateKey, VAPID_SUBJECT: raw.VAPID_SUBJECT, PUSH_ENABLED: true, VAPID_GENERATED: false };
}

/** A P-256 pair as VAPID writes it (RFC 8292 §3.2): the uncompressed public point and the private scalar, base64url. */
export function generateVapidKeys(): { VAPID_PUBLIC_KEY: string; VAPID_PRIVATE_KEY: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = privateKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
  return { VAPID_PUBLIC_KEY: point.toString('base64url'), VAPID_PRIVATE_KEY: jwk.d ?? '' };
}

/** Whether `publicKey` is the point of `privateKey`: a mismatch would make every push service answer 403. */
export function vapidPairMatches(publicKey: string, privateKey: string): boolean {
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(privateKey, 'base64url'));
    return ecdh.getPublicKey().equals(Buffer.from(publicKey, 'base64url'));
  } catch {
    return false;
  }
}

/** A configuration for tests and tools: defaults plus overrides, no environment. */
export function testConfig(overrides: Partial<Record<keyof RawConfig, string | number>> = {}): Config {
  const env = Object.fromEntries(Object.entries(overrides).map(([k, v]) => [k, String(v)]));
  return loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env }).config;
}

/**
 * The webhooks' signing secret: WEBHOOK_SECRET, or in development one derived from TOKEN_SECRET
 * (HMAC-SHA256), which development keeps in DATA_DIR/dev-keys.json, so the secret a receiver was
 * given stays valid across restarts without another file. Production requires WEBHOOK_SECRET.
 */
export function webhookSecret(config: Pick<Config, 'WEBHOOK_SECRET' | 'TOKEN_SECRET'>): string {
  if (config.WEBHOOK_SECRET !== undefined) return config.WEBHOOK_SECRET;
  const key = createHmac('sha256', config.TOKEN_SECRET).update('postbox webhook secret').digest().subarray(0, 24);
  return `whsec_${key.toString('base64')}`;
}
