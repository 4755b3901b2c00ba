/**
 * The error catalogue. Every failure a client can see has a stable code and a
 * status; 4xx messages are exposed, 5xx messages are logged and replaced.
 */
export const errorCatalogue = {
  PB_ERR_NOT_FOUND: { status: 404, message: 'no such route' },
  PB_ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed on this route' },
  PB_ERR_UNAUTHENTICATED: { status: 401, message: 'missing or invalid credentials' },
  PB_ERR_FORBIDDEN: { status: 403, message: 'these credentials do not grant access to this resource' },
  PB_ERR_TOKEN_INVALID: { status: 401, message: 'stream token is missing, malformed, forged or expired' },
  PB_ERR_BAD_JSON: { status: 400, message: 'request body is not valid JSON' },
  PB_ERR_VALIDATION: { status: 400, message: 'request does not match the schema' },
  PB_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'request body must be application/json' },
  PB_ERR_BODY_TOO_LARGE: { status: 413, message: 'request body is larger than BODY_MAX_BYTES' },
  PB_ERR_MESSAGE_TOO_LARGE: { status: 413, message: 'message data is larger than MESSAGE_MAX_BYTES' },
  PB_ERR_QUEUE_FULL: { status: 429, message: "the user's queue holds QUEUE_MAX_LENGTH messages" },
  PB_ERR_TOO_MANY_STREAMS: { status: 429, message: 'this user has MAX_STREAMS_PER_USER open streams' },
  PB_ERR_NODE_STREAMS_FULL: { status: 429, message: 'this node holds MAX_STREAMS_PER_NODE open streams' },
  PB_ERR_STREAM_OPENS_LIMITED: {
    status: 429,
    message: 'this address opened STREAM_OPENS_PER_ADDRESS streams within STREAM_OPENS_WINDOW_MS',
  },
  PB_ERR_KEY_RATE_LIMITED: { status: 429, message: 'the API key is over RATE_LIMIT_KEY_PER_SECOND' },
  PB_ERR_USER_RATE_LIMITED: { status: 429, message: 'messages for this user are over RATE_LIMIT_USER_PER_SECOND' },
  PB_ERR_USER_NOT_FOUND: { status: 404, message: 'no such user' },
  PB_ERR_MESSAGE_NOT_FOUND: { status: 404, message: "no such message in the user's mailbox" },
  PB_ERR_ROOM_NOT_FOUND: { status: 404, message: 'no such room (a room exists while it has members)' },
  PB_ERR_NOT_A_MEMBER: { status: 404, message: 'this user is not a member of the room' },
  PB_ERR_SCHEDULE_NOT_FOUND: { status: 404, message: 'no such recurring schedule for this user' },
  PB_ERR_SCHEDULED_NOT_FOUND: { status: 404, message: 'no pending scheduled message with this id for this user' },
  PB_ERR_PUSH_DISABLED: {
    status: 404,
    message: 'Web Push is off on this server: it needs VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_SUBJECT',
  },
  PB_ERR_PUSH_ENDPOINT_REFUSED: {
    status: 400,
    message: 'push endpoint refused: it must be an https URL on port 443 of a host with public addresses only',
  },
  PB_ERR_PUSH_SUBSCRIPTION_NOT_FOUND: { status: 404, message: 'no push subscription with this endpoint for this user' },
  /** Nothing was sent to Redis (the connection was down): nothing of the request was carried out. */
  PB_ERR_REDIS_UNAVAILABLE: { status: 503, message: 'storage is unavailable: nothing was stored; retry' },
  /** Sent, and no reply came (a timeout, a connection lost after the send): it may have been carried out. */
  PB_ERR_OUTCOME_UNKNOWN: {
    status: 503,
    message: 'storage did not answer: the request may or may not have been carried out; retry with the same key',
  },
  PB_ERR_SHUTTING_DOWN: { status: 503, message: 'server is shutting down' },
  PB_ERR_CLIENT_NOT_BUILT: {
    status: 503,
    message: 'the browser client is not built and cannot be built here: run `npx tsc -p tsconfig.client.json` (or `npm run build`)',
  },
  PB_ERR_INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  /** Only exposed messages reach the client; 5xx are replaced by the catalogue's. */
  readonly expose: boolean;
  /** Extra response headers, e.g. `Retry-After`. */
  readonly headers: Record<string, string>;
  /** Machine-readable details sent with the error (which field failed, which messages of a batch were stored). */
  readonly details: unknown;

  constructor(
    code: ErrorCode,
    message?: string,
    options: { cause?: unknown; headers?: Record<string, string>; details?: unknown } = {},
  ) {
    const entry = errorCatalogue[code];
    super(message ?? entry.message, { cause: options.cause });
    this.code = code;
    this.status = entry.status;
    this.expose = entry.status < 500;
    this.headers = options.headers ?? {};
    this.details = options.details;
  }
}

/** How long a producer should wait when a queue is full: about one ack timeout, at least a second. */
export function retryAfterSeconds(ackTimeoutMs: number): number {
  return Math.max(1, Math.ceil(ackTimeoutMs / 1000));
}

/** Retry-After of a 503 while Redis is away, seconds: about one reconnect attempt of the client (src/queue/redis.ts). */
export const STORAGE_RETRY_AFTER_SECONDS = 1;

/**
 * Errors that mean "Redis is not there right now", as opposed to a bug: ioredis's own (no
 * connection, a command timeout, a connection lost with commands under way), socket errors,
 * and replies of a Redis or cluster that cannot serve yet (LOADING, CLUSTERDOWN, TRYAGAIN).
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.name} ${err.message}`;
  return /enableOfflineQueue|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Command timed out|MaxRetriesPerRequest|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|Stream isn't writeable|Connection|Reached the max retries|Command aborted|Too many Cluster redirections|None of startup nodes|Failed to refresh slots cache|Redis connection is not ready/i.test(
    text,
  );
}
