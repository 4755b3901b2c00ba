/** The longest wait a Retry-After gets between two tries of a webhook batch or a push, ms. */
export const RETRY_AFTER_MAX_MS = 3_600_000;

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; ms from now. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * A try the other side refused (a webhook receiver, a push service), to be retried: thrown by a
 * job so its backoff strategy can honour `retryAfterMs`, from the Retry-After of a 429 or 503
 * when it gave one.
 */
export class RetryLaterError extends Error {
  override name = 'RetryLaterError';
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}
