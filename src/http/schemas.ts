import { z } from 'zod';
import { EVENT_ID_PATTERN, EVENT_NAME_PATTERN, USER_ID_PATTERN } from '../queue/keys.js';

export const userId = z.string().regex(USER_ID_PATTERN, 'must match ^[A-Za-z0-9._:@-]{1,128}$');
/** Room names: the user id pattern, so they are safe in a key's hash tag. */
export const roomName = z.string().regex(USER_ID_PATTERN, 'room must match ^[A-Za-z0-9._:@-]{1,128}$');
export const eventName = z
  .string()
  .regex(EVENT_NAME_PATTERN, 'must match ^[A-Za-z0-9._:-]{1,64}$')
  // The server's control events (`postbox.acked`, …) carry no id and tell the client library what
  // happened elsewhere; a producer's event of that name would be taken for one.
  .refine((name) => !name.toLowerCase().startsWith('postbox.'), 'names starting with "postbox." are reserved for the server');
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
