import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import webpush from 'web-push';
import type { Clock } from '../clock.js';
import type { PushSubscriptionKeys } from '../queue/push-subscriptions.js';
import { EndpointRefusedError, checkEndpointUrl, publicOnlyLookup } from './push-endpoint.js';
import { retryAfterMs } from './retry-after.js';

export interface VapidKeys {
  /** base64url, uncompressed P-256 point. */
  publicKey: string;
  /** base64url, 32 bytes. */
  privateKey: string;
  /** `mailto:` or `https:` (RFC 8292 §2.1). */
  subject: string;
}

export interface PushSenderOptions {
  vapid: VapidKeys;
  /** PUSH_ALLOW_PRIVATE_ENDPOINTS. */
  allowPrivate: boolean;
  /** A push service idle this long fails the attempt, ms (PUSH_TIMEOUT_MS). */
  timeoutMs: number;
  /** Extra PEM certificates to trust besides the public roots (a test push service). @defaultValue none */
  ca?: string | undefined;
  /** Sockets kept per push service origin. @defaultValue 64 */
  maxSockets?: number;
}

export interface PushRequest {
  /** RFC 8030 §5.2, s. */
  ttlSeconds: number;
  urgency?: 'very-low' | 'low' | 'normal' | 'high' | undefined;
  topic?: string | undefined;
}

/** What one push request came to, as the push worker acts on it. */
export type PushOutcome =
  /** Accepted (201, RFC 8030 §5). */
  | { outcome: 'sent'; status: number }
  /** 404 / 410: the subscription no longer exists (RFC 8030 §7.3); delete it. */
  | { outcome: 'gone'; status: number }
  /** 429, 5xx, 408 or no answer: try again, not before `retryAfterMs` when the service said. */
  | { outcome: 'retry'; status: number | undefined; retryAfterMs: number | undefined; reason: string }
  /** Any other answer (400, 401, 403, 413): it would come again; do not retry. */
  | { outcome: 'rejected'; status: number; reason: string }
  /** The endpoint points somewhere postbox may not send to (src/workers/push-endpoint.ts). */
  | { outcome: 'blocked'; reason: string };

export interface PushSender {
  send(subscription: PushSubscriptionKeys, payload: string, request: PushRequest): Promise<PushOutcome>;
  close(): void;
}

/** A VAPID JWT may live 24 h (RFC 8292 §2); ours live 12 h and are renewed with less than 1 h left, s. */
const VAPID_LIFETIME_S = 12 * 3600;
const VAPID_RENEW_S = 3600;

/**
 * Sends Web Push requests with `web-push` (RFC 8291 aes128gcm encryption, RFC 8292 VAPID) over
 * one keep-alive agent whose sockets connect only to public addresses. The VAPID header of each
 * push service origin is signed once and reused until near its expiry.
 */
export function createPushSender(options: PushSenderOptions, clock: Clock): PushSender {
  const { vapid, allowPrivate, timeoutMs } = options;
  const agent = new Agent({
    keepAlive: true,
    maxSockets: options.maxSockets ?? 64,
    ...(allowPrivate ? {} : { lookup: publicOnlyLookup }),
    ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca] }),
  });
  const headers = new Map<string, { authorization: string; exp: number }>();

  function authorization(origin: string): string {
    const now = Math.floor(clock.now() / 1000);
    const cached = headers.get(origin);
    if (cached && cached.exp - now > VAPID_RENEW_S) return cached.authorization;
    const exp = now + VAPID_LIFETIME_S;
    const { Authorization } = webpush.getVapidHeaders(origin, vapid.subject, vapid.publicKey, vapid.privateKey, 'aes128gcm', exp);
    if (headers.size > 1000) headers.clear(); // a handful of push services in practice; bound it anyway
    headers.set(origin, { authorization: Authorization, exp });
    return Authorization;
  }

  return {
    async send(subscription, payload, request) {
      let origin: string;
      try {
        // Again at send time: what was stored may predate a stricter configuration.
        origin = checkEndpointUrl(subscription.endpoint, allowPrivate).origin;
      } catch (err) {
        return { outcome: 'blocked', reason: (err as Error).message };
      }
      try {
        const result = await webpush.sendNotification(
          { endpoint: subscription.endpoint, keys: { p256dh: subscription.p256dh, auth: subscription.auth } },
          payload,
          {
            TTL: request.ttlSeconds,
            headers: { Authorization: authorization(origin) },
            contentEncoding: 'aes128gcm',
            ...(request.urgency ? { urgency: request.urgency } : {}),
            ...(request.topic ? { topic: request.topic } : {}),
            agent,
            timeout: timeoutMs,
          },
        );
        return { outcome: 'sent', status: result.statusCode };
      } catch (err) {
        return classify(err, clock.now());
      }
    },
    close() {
      agent.destroy();
    },
  };
}

function classify(err: unknown, now: number): PushOutcome {
  if (err instanceof webpush.WebPushError) {
    const status = err.statusCode;
    const reason = `push service answered ${status}${err.body ? `: ${String(err.body).slice(0, 200)}` : ''}`;
    if (status === 404 || status === 410) return { outcome: 'gone', status };
    if (status === 429 || status === 408 || status >= 500) {
      return { outcome: 'retry', status, retryAfterMs: retryAfterMs(err.headers['retry-after'], now), reason };
    }
    return { outcome: 'rejected', status, reason };
  }
  // The lookup refused the host: web-push hands the socket's error on as it is.
  const cause = err as Error & { cause?: unknown };
  if (err instanceof EndpointRefusedError || cause?.cause instanceof EndpointRefusedError) {
    return { outcome: 'blocked', reason: (err as Error).message };
  }
  const message = err instanceof Error ? `${(err as NodeJS.ErrnoException).code ?? err.name}: ${err.message}` : String(err);
  return { outcome: 'retry', status: undefined, retryAfterMs: undefined, reason: message };
}
