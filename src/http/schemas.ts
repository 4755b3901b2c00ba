import { z } from 'zod';
import { EVENT_ID_PATTERN, EVENT_NAME_PATTERN, USER_ID_PATTERN } from '../queue/keys.js';

export const userId = z.string().regex(USER_ID_PATTERN, 'must match ^[A-Za-z0-9._:@-]{1,128}$');
/** Room names: the user id pattern, so they are safe in a key's hash tag. */
export const roomName = z.string().regex(USER_ID_PATTERN, 'room must match ^[A-Za-z0-9._:@-]{1,128}$');
/** The server's control events (`postbox.acked`, `postbox.expired`, `postbox.counts`) own this prefix. */
export const RESERVED_EVENT_PREFIX = 'postbox.';
export const eventName = z
  .string()
  .regex(EVENT_NAME_PATTERN, 'must match ^[A-Za-z0-9._:-]{1,64}$')
  .refine(
    (name) => !name.toLowerCase().startsWith(RESERVED_EVENT_PREFIX),
    `event names starting with "${RESERVED_EVENT_PREFIX}" are reserved for the server's control events (postbox.acked, postbox.expired, postbox.counts); use another name`,
  );
export const eventId = z.string().regex(EVENT_ID_PATTERN, 'must be an event id like 1732150000000-0');

/** `data` may be any JSON value, null included, but must be present. */
export const messageData = z.custom<unknown>((v) => v !== undefined, { message: 'data is required' });
/** A message's time to live, ms: at most a year. */
export const ttlMs = z.number().int().min(1).max(365 * 86_400_000);

// Control characters are kept for internal keys (appends by jobs), so no producer key collides with one.
export const idempotencyKey = z
  .string()
  .min(1)
  .max(256)
  .refine((k) => !Array.from(k).some((c) => c < ' '), 'must not contain control characters');

/** The largest push option, as JSON: with its id and ack credential a push stays under a push service's 4096 bytes (RFC 8030 §7.2). */
export const PUSH_OPTION_MAX_BYTES = 2048;

/**
 * `push`: send this message by Web Push too, when the user has no open stream (src/workers/push-worker.ts).
 * `title` and `body` are what the notification shows; `urgency` and `topic` go to the push service.
 */
export const pushOption = z
  .strictObject({
    title: z.string().min(1).max(200),
    body: z.string().max(1000).optional(),
    /** RFC 8030 §5.3. @defaultValue 'normal' */
    urgency: z.enum(['very-low', 'low', 'normal', 'high']).optional(),
    /** RFC 8030 §5.4: a later push with the same topic replaces one the push service still holds. */
    topic: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'topic: 1 to 32 characters of the base64url alphabet (RFC 8030 §5.4)').optional(),
  })
  .refine((p) => Buffer.byteLength(JSON.stringify(p)) <= PUSH_OPTION_MAX_BYTES, {
    message: `at most ${PUSH_OPTION_MAX_BYTES} bytes as JSON (a push carries at most 4096)`,
  });
export type PushOptionBody = z.infer<typeof pushOption>;

const base64url = (bytes: number, what: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_-]+={0,2}$/, `${what} must be base64url`)
    .refine((v) => Buffer.from(v, 'base64url').length === bytes, `${what} must be ${bytes} bytes`);

/** What `PushSubscription.toJSON()` gives in a browser (W3C Push API §PushSubscriptionJSON). */
export const pushSubscriptionBody = z.strictObject({
  endpoint: z.string().min(1).max(2048),
  expirationTime: z.number().nullable().optional(),
  keys: z.object({
    // RFC 8291 §3.1: an uncompressed P-256 point (0x04 || x || y).
    p256dh: base64url(65, 'keys.p256dh').refine((v) => Buffer.from(v, 'base64url')[0] === 4, 'keys.p256dh must be an uncompressed P-256 point'),
    // RFC 8291 §3.2: a 16-byte authentication secret.
    auth: base64url(16, 'keys.auth'),
  }),
});

const messageFields = {
  event: eventName.default('message'),
  data: messageData,
  key: idempotencyKey.optional(),
  /** Dropped, never delivered, after this long (for a scheduled message: after it is due). */
  ttlMs: ttlMs.optional(),
  /** Held this long before it enters the mailbox, ms. */
  delayMs: z.number().int().min(0).max(365 * 86_400_000, 'at most a year').optional(),
  /** Held until then: ISO time or epoch ms; a time in the past delivers now. */
  deliverAt: z.union([z.iso.datetime({ offset: true }), z.number().int().min(0)]).optional(),
  /** Also by Web Push, when the user has no open stream. */
  push: pushOption.optional(),
};

const oneSchedule: [(m: { delayMs?: unknown; deliverAt?: unknown }) => boolean, { message: string; path: string[] }] = [
  (m) => m.delayMs === undefined || m.deliverAt === undefined,
  { message: 'give delayMs or deliverAt, not both', path: ['deliverAt'] },
];

export const enqueueBody = z.strictObject(messageFields).refine(...oneSchedule);
export type EnqueueBody = z.infer<typeof enqueueBody>;

export const batchBody = z.strictObject({
  messages: z
    .array(z.strictObject({ userId, ...messageFields }).refine(...oneSchedule))
    .min(1)
    .max(1000, 'at most 1000 messages per batch'),
});
export type BatchBody = z.infer<typeof batchBody>;

export const tokenBody = z.strictObject({
  userId,
  ttlSeconds: z
    .number()
    .int()
    .min(10)
    .max(30 * 86_400)
    .optional(),
});

export const ackBody = z.strictObject({
  ids: z.array(eventId).min(1).max(1000, 'at most 1000 ids per call'),
});

export const nackBody = z.strictObject({
  ids: z.array(eventId).min(1).max(1000, 'at most 1000 ids per call'),
  /** `failed`: a handler threw; `unhandled`: no handler for the event. @defaultValue 'failed' */
  reason: z.enum(['failed', 'unhandled']).default('failed'),
});

/** `POST /v1/messages/status`: up to 1000 messages, of any users. */
export const statusBody = z.strictObject({
  messages: z
    .array(z.strictObject({ userId, id: z.string().min(1).max(64) }))
    .min(1)
    .max(1000, 'at most 1000 messages per call'),
});
