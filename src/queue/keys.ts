/**
 * Redis key names. Every key of one user shares the hash tag `{<userId>}`, so a
 * Redis Cluster keeps a user's mailbox, dead letters and idempotency records in
 * one slot and multi-key scripts stay legal.
 */
export interface Keys {
  /** The user's mailbox: a stream whose entry ids are the event ids. */
  mailbox(userId: string): string;
  /** The user's dead letters: a stream of messages delivered MAX_DELIVERIES times. */
  dead(userId: string): string;
  /** The record of one idempotency key: a string holding the first event id. */
  idempotency(userId: string, key: string): string;
  /** When the user's messages with a TTL expire: a sorted set, score = expiry (epoch ms), member = event id. */
  expiries(userId: string): string;
  /** The user's recurring schedules: a hash, field = schedule name, value = BullMQ job scheduler id. */
  schedules(userId: string): string;
  /** Members of a room: a sorted set, every score 0, so members page and fan out in lexical order. */
  room(room: string): string;
  /** Sorted set (score 0) of rooms that have members, for the admin. */
  rooms(): string;
  /** Hash of the last housekeeping run: `at` (epoch ms), `expired`, `ms`. */
  housekeeping(): string;
  /**
   * Sorted set of users who have a mailbox or dead letters, score = when they entered (epoch ms).
   * A user enters when their mailbox is created and leaves when housekeeping or a purge removes
   * their keys (src/queue/users-index.ts).
   */
  users(): string;
  /** Hash of node reports (open streams per node) for the admin: field = node, value = JSON. */
  nodes(): string;
  /** Which node drains a user whose streams are on several nodes: a string with its node id and an expiry (a lease). */
  drainer(userId: string): string;
  /** The nodes holding the user's streams: a hash, field = node id, value = since when (Redis time, ms). */
  registry(userId: string): string;
  /** Deliveries that counted toward MAX_DELIVERIES, per in-flight message: a hash, field = event id. */
  counted(userId: string): string;
  /** When the user's page last acked, or reported a failed handler: a string, epoch ms. */
  lastAck(userId: string): string;
  /** Receipts of acked, expired and dead messages: a hash, field = event id, value = compact receipt (src/queue/receipts.ts). */
  receipts(userId: string): string;
  /** When each receipt was written: a list of `<epoch ms> <event id>` in write order, which trims them by age and count. */
  receiptTimes(userId: string): string;
  /**
   * First write and attempts of messages in flight, for their receipts: a hash, field = event id,
   * value = `<epoch ms>` after one write, `<epoch ms>:<attempts>` after more.
   */
  firstWrites(userId: string): string;
  /** Ids of messages that expired before they were written, newest first (a list, at most 100), for the next stream. */
  missed(userId: string): string;
  /** How many messages expired before they were written since the last stream took the notice: a string. */
  missedCount(userId: string): string;
  /** Webhook events written by the scripts, waiting for a node to put them into webhook jobs: a stream. */
  outbox(userId: string): string;
  /** Which node is taking the outbox's entries now: a string with an expiry. */
  outboxLock(userId: string): string;
  /** Webhook counters of every node (queued, delivered, failed, dropped, last success and failure): a hash. */
  webhooks(): string;
  /**
   * The user's Web Push subscriptions: a hash, field = subscription id (a digest of the endpoint),
   * value = JSON `{endpoint, p256dh, auth, at}` (src/queue/push-subscriptions.ts).
   */
  push(userId: string): string;
}

export function createKeys(prefix: string): Keys {
  return {
    mailbox: (userId) => `${prefix}:{${userId}}:m`,
    dead: (userId) => `${prefix}:{${userId}}:dead`,
    idempotency: (userId, key) => `${prefix}:{${userId}}:idem:${key}`,
    expiries: (userId) => `${prefix}:{${userId}}:exp`,
    schedules: (userId) => `${prefix}:{${userId}}:schedules`,
    room: (room) => `${prefix}:room:{${room}}:members`,
    rooms: () => `${prefix}:rooms`,
    housekeeping: () => `${prefix}:housekeeping`,
    users: () => `${prefix}:users`,
    nodes: () => `${prefix}:nodes`,
    drainer: (userId) => `${prefix}:{${userId}}:drainer`,
    registry: (userId) => `${prefix}:{${userId}}:nodes`,
    counted: (userId) => `${prefix}:{${userId}}:n`,
    lastAck: (userId) => `${prefix}:{${userId}}:ackat`,
    receipts: (userId) => `${prefix}:{${userId}}:rc`,
    receiptTimes: (userId) => `${prefix}:{${userId}}:rt`,
    firstWrites: (userId) => `${prefix}:{${userId}}:fw`,
    missed: (userId) => `${prefix}:{${userId}}:missed`,
    missedCount: (userId) => `${prefix}:{${userId}}:missedn`,
    outbox: (userId) => `${prefix}:{${userId}}:wh`,
    outboxLock: (userId) => `${prefix}:{${userId}}:whlock`,
    webhooks: () => `${prefix}:webhooks`,
    push: (userId) => `${prefix}:{${userId}}:push`,
  };
}

/** Consumer group of every mailbox. One group, one consumer: nodes share the in-flight list. */
export const GROUP = 'delivery';
export const CONSUMER = 'postbox';

/** User ids and room names: nothing here can break SSE framing or a Redis key's hash tag. */
export const USER_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
/** Event names: no CR, LF or colon-space tricks can reach the `event:` line. */
export const EVENT_NAME_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** Event ids are stream entry ids: `<ms>-<seq>`. */
export const EVENT_ID_PATTERN = /^\d{1,15}-\d{1,15}$/;

/** Milliseconds part of an event id: when it was enqueued. */
export function enqueuedAtOf(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** Orders two event ids as the stream does (`<ms>-<seq>`, both numeric): negative, zero or positive. */
export function compareIds(a: string, b: string): number {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db));
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1));
}
