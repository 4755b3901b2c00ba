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
  PB_ERR_USER_NOT_FOUND: { status: 404, message: 'no such user' },
  PB_ERR_MESSAGE_NOT_FOUND: { status: 404, message: "no such message in the user's mailbox" },
  PB_ERR_ROOM_NOT_FOUND: { status: 404, message: 'no such room (a room exists while it has members)' },
  PB_ERR_NOT_A_MEMBER: { status: 404, message: 'this user is not a member of the room' },
  PB_ERR_SCHEDULE_NOT_FOUND: { status: 404, message: 'no such recurring schedule for this user' },
  PB_ERR_SCHEDULED_NOT_FOUND: { status: 404, message: 'no pending scheduled message with this id for this user' },
  PB_ERR_REDIS_UNAVAILABLE: { status: 503, message: 'storage is unavailable, try again' },
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
  /** Machine-readable details sent with 4xx errors (e.g. which field failed). */
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

/** Errors that mean "Redis is not there right now", as opposed to a bug. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.name} ${err.message}`;
  return /enableOfflineQueue|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Command timed out|MaxRetriesPerRequest|LOADING|Stream isn't writeable|Connection|Reached the max retries/i.test(
    text,
  );
}
