import type { Clock } from '../clock.js';
import type { WebhookEventType } from '../config.js';
import { EVENT_ID_PATTERN, GROUP, enqueuedAtOf, type Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { SCHEDULED_ID_PATTERN, type Schedules } from './schedules.js';
import { readCounts } from './admin/queue-listing.js';
import { withScripts, type StatusReply } from './scripts.js';

/*
 * Receipts: what became of a message after it left the mailbox. ack.lua, pop.lua and
 * expire.lua write one per acked, expired or dead message, in the user's slot:
 *
 * - `pb:{u}:rc`, a hash: field = event id, value =
 *   `<state>:<at - enqueued>:<deliveries>:<attempts>:<first write - enqueued, or empty>:<reason>`
 *   (state `a` acked, `x` expired, `d` dead; times in ms relative to the id's enqueue time, so a
 *   receipt is ~20 bytes of value; reason only for dead: max-deliveries | max-attempts);
 * - `pb:{u}:rt`, a list of `<epoch ms> <event id>` in the order the receipts were written,
 *   which bounds them by age (RECEIPT_RETENTION_MS) and count (RECEIPTS_MAX_PER_USER, oldest
 *   first) at O(1) a write (a sorted set's inserts cost about twice the CPU, bench/receipts.ts).
 *
 * Both keys expire RECEIPT_RETENTION_MS after their last write, so an idle user's receipts go by
 * themselves. The same scripts append webhook events (a letter per type, below) to the user's
 * outbox stream. Everything they need comes in one argument, the receipt spec built here.
 */

/** The scripts' letter for each webhook event type (and receipt state). */
const LETTERS: Record<WebhookEventType, string> = {
  'message.acked': 'a',
  'message.dead': 'd',
  'message.expired': 'x',
  'message.delivered': 'f',
};
const TYPES: Record<string, WebhookEventType> = Object.fromEntries(Object.entries(LETTERS).map(([t, l]) => [l, t as WebhookEventType]));

/** The webhook event type of a script's letter; undefined for a letter it does not know. */
export function eventTypeOf(letter: string): WebhookEventType | undefined {
  return TYPES[letter];
}

export interface ReceiptOptions {
  /** RECEIPT_RETENTION_MS; 0 keeps no receipts. */
  retentionMs: number;
  /** RECEIPTS_MAX_PER_USER. */
  maxPerUser: number;
  /** Webhook events the scripts write to the outbox; none when webhooks are off. */
  webhookEvents: readonly WebhookEventType[];
}

/** The scripts' receipt spec: `'<retention ms> <receipts per user> <event letters, or ->'`. */
export function receiptSpec(options: ReceiptOptions | undefined): string {
  if (options === undefined) return '0 1 -';
  const letters = options.webhookEvents.map((e) => LETTERS[e]).join('');
  return `${options.retentionMs} ${options.maxPerUser} ${letters || '-'}`;
}

/** Whether a spec asks the scripts for anything: receipts, or webhook events. */
export function specOn(spec: string): boolean {
  const [retention = '0', , letters = '-'] = spec.split(' ');
  return Number(retention) > 0 || letters !== '-';
}

/** Whether a spec asks the scripts for webhook events of this type. */
export function specWants(spec: string, type: WebhookEventType): boolean {
  return (spec.split(' ')[2] ?? '').includes(LETTERS[type]);
}

/** How many webhook events a spec's scripts append to the outbox for an ack, and for a pop's outcome. */
export function outboxCounter(spec: string): {
  acked(count: number): number;
  popped(result: { expired: number; dead: number; deliveries: ReadonlyArray<{ attempts: number }> }): number;
} {
  const on = (type: WebhookEventType) => specWants(spec, type);
  const [acked, dead, expired, delivered] = [on('message.acked'), on('message.dead'), on('message.expired'), on('message.delivered')];
  return {
    acked: (count) => (acked ? count : 0),
    popped: (r) =>
      (expired ? r.expired : 0) + (dead ? r.dead : 0) + (delivered ? r.deliveries.filter((d) => d.attempts === 1).length : 0),
  };
}

/** The keys a receipt-writing script takes after its own: receipts, their times, outbox, first writes. */
export function receiptKeys(keys: Keys, userId: string): string[] {
  return [keys.receipts(userId), keys.receiptTimes(userId), keys.outbox(userId), keys.firstWrites(userId)];
}

/** The keys of the "expired before it was written" notices: ids, count. */
export function noticeKeys(keys: Keys, userId: string): string[] {
  return [keys.missed(userId), keys.missedCount(userId)];
}

export type MessageState = 'scheduled' | 'waiting' | 'inflight' | 'acked' | 'dead' | 'expired';

/** What the status API answers for one message; times are ISO 8601. */
export interface MessageStatus {
  /** The id asked for: an event id, or a scheduled message's id. */
  id: string;
  state: MessageState;
  /** Deliveries that counted (the page had it: acked, nacked, or missed its ack while acking others). */
  deliveries: number;
  /** Writes to the user's streams. */
  attempts: number;
  /** When it entered the mailbox (for a scheduled message not yet due: when it was scheduled). */
  enqueuedAt: string;
  firstDeliveredAt?: string;
  ackedAt?: string;
  deadAt?: string;
  expiredAt?: string;
  /** Dead only: max-deliveries | max-attempts, or not-enqueued for a scheduled message that never got in. */
  reason?: string;
  /** Scheduled messages: the scheduled id, and the event id once due (in `eventId`). */
  scheduledId?: string;
  eventId?: string;
  deliverAt?: string;
}

const iso = (ms: number) => new Date(ms).toISOString();
/** Receipt letters; `f`, a first write, is only ever an outbox item (message.delivered). */
const STATES: Record<string, MessageState> = { a: 'acked', x: 'expired', d: 'dead', f: 'inflight' };
const TIME_FIELD: Record<string, 'ackedAt' | 'expiredAt' | 'deadAt'> = { a: 'ackedAt', x: 'expiredAt', d: 'deadAt' };

/**
 * A receipt (or an outbox item's) as the scripts write it: the message's status and when it got
 * there (`at`, epoch ms); undefined when malformed. A first write (`f`) reads as in flight.
 */
export function readReceipt(id: string, text: string): { at: number; status: MessageStatus } | undefined {
  const [letter = '', at, deliveries, attempts, first, reason] = text.split(':');
  const state = STATES[letter];
  const enqueued = enqueuedAtOf(id);
  const doneAt = enqueued + Number(at);
  if (state === undefined || !Number.isFinite(doneAt)) return undefined;
  const timeField = TIME_FIELD[letter];
  const status: MessageStatus = {
    id,
    state,
    deliveries: Number(deliveries) || 0,
    attempts: Number(attempts) || 0,
    enqueuedAt: iso(enqueued),
    ...(first ? { firstDeliveredAt: iso(enqueued + Number(first)) } : {}),
    ...(timeField ? { [timeField]: iso(doneAt) } : {}),
    ...(reason ? { reason } : {}),
  };
  return { at: doneAt, status };
}

/** A receipt of the receipts hash; undefined when malformed or older than `retentionMs`. */
export function decodeReceipt(id: string, text: string, now: number, retentionMs: number): MessageStatus | undefined {
  const read = readReceipt(id, text);
  if (read === undefined || read.status.state === 'inflight' || read.at + retentionMs <= now) return undefined;
  return read.status;
}

function fromReply(id: string, entry: StatusReply[number], now: number, retentionMs: number): MessageStatus | undefined {
  const enqueuedAt = iso(enqueuedAtOf(id));
  switch (entry[0]) {
    case 'r':
      return decodeReceipt(id, entry[1], now, retentionMs);
    case 'u':
      return undefined;
    case 'w':
    case 'i': {
      const expiresAt = Number(entry[0] === 'w' ? entry[1] : entry[4]) || undefined;
      const written = entry[0] === 'i' ? { attempts: entry[1], first: entry[2], deliveries: entry[3] } : undefined;
      // Past its TTL and not dropped yet: it will never be written again, so it is expired now.
      const expired = expiresAt !== undefined && expiresAt <= now;
      return {
        id,
        state: expired ? 'expired' : written ? 'inflight' : 'waiting',
        deliveries: written?.deliveries ?? 0,
        attempts: written?.attempts ?? 0,
        enqueuedAt,
        ...(written && written.first > 0 ? { firstDeliveredAt: iso(written.first) } : {}),
        ...(expired ? { expiredAt: iso(expiresAt) } : {}),
      };
    }
  }
}

export interface StatusQueries {
  /**
   * What became of each message, in order; undefined for one that is unknown or whose receipt
   * is past its retention. An id that is not an event id is looked up as a scheduled message.
   * One script call per user, issued together (one write per Redis node).
   */
  status(pairs: ReadonlyArray<{ userId: string; id: string }>): Promise<Array<MessageStatus | undefined>>;
  /** The user's waiting and in-flight messages (for a badge). */
  counts(userId: string): Promise<{ waiting: number; inflight: number }>;
}

export function createStatusQueries(deps: {
  redis: RedisClient;
  keys: Keys;
  clock: Clock;
  schedules: Pick<Schedules, 'find'>;
  options: { retentionMs: number };
}): StatusQueries {
  const { keys, clock, schedules, options } = deps;
  const redis = withScripts(deps.redis);

  /** Event ids per user → their statuses, one pbStatus per user. */
  async function byEventId(wanted: Map<string, Set<string>>, now: number): Promise<Map<string, MessageStatus | undefined>> {
    const users = [...wanted.keys()];
    const replies = await Promise.all(
      users.map((u) => {
        const ids = [...(wanted.get(u) ?? [])];
        return redis.pbStatus(keys.mailbox(u), keys.receipts(u), keys.counted(u), keys.firstWrites(u), GROUP, ...ids);
      }),
    );
    const found = new Map<string, MessageStatus | undefined>();
    users.forEach((u, i) => {
      const ids = [...(wanted.get(u) ?? [])];
      ids.forEach((id, j) => {
        const entry = replies[i]?.[j];
        found.set(`${u}\n${id}`, entry === undefined ? undefined : fromReply(id, entry, now, options.retentionMs));
      });
    });
    return found;
  }

  return {
    async status(pairs) {
      const now = clock.now();
      // Scheduled ids first: those already due are looked up by their event id with the rest.
      const scheduled = await Promise.all(
        pairs.map((p) =>
          !EVENT_ID_PATTERN.test(p.id) && SCHEDULED_ID_PATTERN.test(p.id) ? schedules.find(p.userId, p.id) : undefined,
        ),
      );
      const wanted = new Map<string, Set<string>>();
      const eventIdOf = pairs.map((p, i) => {
        const s = scheduled[i];
        const eventId = EVENT_ID_PATTERN.test(p.id) ? p.id : s?.state === 'enqueued' ? s.eventId : undefined;
        if (eventId !== undefined) {
          let set = wanted.get(p.userId);
          if (set === undefined) wanted.set(p.userId, (set = new Set()));
          set.add(eventId);
        }
        return eventId;
      });
      const found = wanted.size > 0 ? await byEventId(wanted, now) : new Map<string, MessageStatus | undefined>();
      return pairs.map((p, i) => {
        const s = scheduled[i];
        const eventId = eventIdOf[i];
        if (s?.state === 'scheduled' || s?.state === 'failed') {
          const base = { deliveries: 0, attempts: 0, enqueuedAt: iso(s.scheduledAt), scheduledId: p.id };
          return s.state === 'scheduled'
            ? { id: p.id, state: 'scheduled', ...base, deliverAt: iso(s.deliverAt) }
            : { id: p.id, state: 'dead', ...base, deadAt: iso(s.failedAt), reason: 'not-enqueued' };
        }
        if (eventId === undefined) return undefined;
        const status = found.get(`${p.userId}\n${eventId}`);
        if (status === undefined || eventId === p.id) return status;
        return { ...status, id: p.id, scheduledId: p.id, eventId };
      });
    },

    async counts(userId) {
      // As the admin counts them: what is past its TTL is neither waiting nor in flight any more.
      const { waiting, inflight } = await readCounts(redis, keys, userId, clock.now());
      return { waiting, inflight };
    },
  };
}
