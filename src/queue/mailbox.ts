import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { EXPIRED_SCAN_MAX } from './admin/queue-listing.js';
import { CONSUMER, GROUP, createKeys, enqueuedAtOf, type Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { noticeKeys, outboxCounter, receiptKeys, receiptSpec, specOn } from './receipts.js';
import { withScripts, type EnqueueReply, type JoinReply, type PopReply, type ScriptedRedis } from './scripts.js';
import { settle } from './settle.js';

export interface MailboxOptions {
  /** Prefix of every key. @defaultValue 'pb' */
  keyPrefix: string;
  /** Messages held per user; enqueue beyond it fails with PB_ERR_QUEUE_FULL. */
  queueMaxLength: number;
  /** How long an idempotency key is remembered, ms. */
  dedupWindowMs: number;
  /** ACK_TIMEOUT_MS: a message written this long ago and not acked is due again. */
  ackTimeoutMs: number;
  /** In-flight window per user (MAX_INFLIGHT). */
  maxInflight: number;
  /** Deliveries that count (see pop.lua) before a message becomes a dead letter (MAX_DELIVERIES). */
  maxDeliveries: number;
  /** Attempts (writes of any kind) before a message becomes a dead letter (MAX_ATTEMPTS). */
  maxAttempts: number;
  /** Dead letters kept per user (approximately). */
  deadMaxLength: number;
  /** Seconds a producer is told to wait when a queue is full. */
  retryAfterSeconds: number;
  /** How long a claim to drain a user shared by several nodes lasts, ms. */
  leaseMs: number;
  /** This node's id, in the registry of the nodes holding a user and in what it publishes. */
  nodeId: string;
  /** The user's pub/sub channel (src/delivery/wake.ts), on which enqueues wake the nodes holding the user. */
  userChannel: (userId: string) => string;
  /**
   * Called when an enqueue finds this node the only one holding the user's streams: nothing
   * was published, and this wakes the drain here without a round trip through Redis.
   */
  onLocalEnqueue?: (userId: string, id: string) => void;
  /** What the scripts record of messages that are done (src/queue/receipts.ts `receiptSpec`). @defaultValue none */
  receiptSpec?: string;
  /** A script may have added `events` webhook events to the user's outbox (src/queue/webhook-outbox.ts). */
  onOutbox?: (userId: string, events: number) => void;
  /**
   * Called, and awaited, with the messages of an enqueue that carry a `push` option (new ones and
   * idempotent repeats alike): src/queue/push-jobs.ts plans their Web Push. @defaultValue none: push off
   */
  onPushable?: (messages: Array<{ userId: string; id: string }>) => Promise<void>;
}

export interface NewMessage {
  userId: string;
  /** @defaultValue 'message' */
  event: string;
  /** The message's data, already serialised to one line of JSON. */
  data: string;
  /** Idempotency key: the same key within the dedup window yields the first id. */
  key?: string | undefined;
  /** Dropped, never delivered, after this long, ms. */
  ttlMs?: number | undefined;
  /** How long `key` is remembered, ms, when not the mailbox's dedup window (fan-out keys need less). */
  dedupWindowMs?: number | undefined;
  /** The Web Push option (`{title, body, urgency?, topic?}`) as JSON, stored with the message. */
  push?: string | undefined;
}

export interface Enqueued {
  id: string;
  userId: string;
  enqueuedAt: number;
  /** false when the idempotency key had been seen and `id` is the first message's. */
  created: boolean;
  /** This node is the only one holding the user's streams: nothing was published (`onLocalEnqueue` was called). */
  local: boolean;
}

export interface Delivery {
  id: string;
  event: string;
  data: string;
  /** Writes of this message so far, this one included (1 on the first). */
  attempts: number;
}

export type PopResult =
  | {
      status: 'popped';
      inflight: number;
      /** New messages may wait beyond the in-flight window. */
      more: boolean;
      expired: number;
      dead: number;
      /** When the next in-flight message reaches the ack timeout, ms from now; undefined if none. */
      nextDueMs: number | undefined;
      /** Other nodes hold the user: what was popped was published to them. */
      shared: boolean;
      /** Messages past the ack timeout on streams that acked nothing: close the user's streams here. */
      unresponsive: number;
      deliveries: Delivery[];
    }
  /** Another node drains this user; try again after `waitMs` (the lease's remaining time). */
  | { status: 'not-mine'; waitMs: number }
  | { status: 'empty' };

export interface Joined {
  /** Other nodes holding the user. */
  others: number;
  /** What is in flight, to write to the new stream first. */
  inflight: Array<Delivery & { idleMs: number }>;
  /** When asked for: the user's counts, and the messages that expired before they were written (taken). */
  notices?: { counts: { waiting: number; inflight: number }; expired: { count: number; ids: string[] } };
}

export interface Mailbox {
  readonly keys: Keys;
  enqueue(message: NewMessage): Promise<Enqueued>;
  /** Enqueues many messages at once; a full queue yields an AppError in that message's place. */
  enqueueMany(messages: NewMessage[]): Promise<Array<Enqueued | AppError>>;
  /** Mailbox lengths (waiting plus in flight) of these users. */
  lengths(userIds: string[]): Promise<Map<string, number>>;
  /**
   * The next messages to write for each user (expired and dead ones counted).
   * A user whose pop failed (a script error, a key moving between shards)
   * gets its Error; the others' results stand.
   */
  pop(userIds: string[]): Promise<Map<string, PopResult | Error>>;
  /** A stream of the user opened on this node: register (its first one), read what is in flight, and the notices when asked. */
  join(userId: string, options: { first: boolean; notices?: boolean }): Promise<Joined>;
  /** The last stream of the user on this node closed; returns how many other nodes still hold the user. */
  release(userId: string): Promise<number>;
  /** Acknowledges these in-flight ids (or all up to `upTo`); returns those that were; `wake` when the window was full. */
  ack(userId: string, ids: string[], upTo?: string): Promise<{ acked: string[]; wake: boolean }>;
  /**
   * The page did not handle these in-flight ids: `failed` (its handler threw; each counts as a
   * delivery when its ack timeout passes) or `unhandled` (no handler for the event; not counted).
   */
  nack(userId: string, ids: string[], reason?: 'failed' | 'unhandled'): Promise<number>;
}

/**
 * The hot path of storage: enqueue, pop, join, ack on the users' Redis
 * Streams. One command per user, issued together: with auto-pipelining they
 * leave in one write per Redis node, and on a cluster each goes to its own
 * shard. It counts enqueued, acked, expired and dead messages itself, so every
 * way a message enters or leaves a mailbox is counted once.
 */
export function createMailbox(deps: {
  redis: RedisClient;
  clock: Clock;
  metrics: Metrics;
  options: MailboxOptions;
}): Mailbox {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { clock, metrics, options } = deps;
  const keys = createKeys(options.keyPrefix);
  const spec = options.receiptSpec ?? receiptSpec(undefined);
  const keepsFirstWrites = specOn(spec);
  const outboxEvents = outboxCounter(spec);

  function enqueueOne(m: NewMessage, now: number): Promise<EnqueueReply> {
    const expiresAt = m.ttlMs === undefined ? 0 : now + m.ttlMs;
    return redis.pbEnqueue(
      keys.mailbox(m.userId),
      keys.idempotency(m.userId, m.key ?? ''),
      keys.expiries(m.userId),
      keys.registry(m.userId),
      options.userChannel(m.userId),
      GROUP,
      options.queueMaxLength,
      m.event,
      m.data,
      expiresAt,
      m.key === undefined ? '0' : '1',
      m.dedupWindowMs ?? options.dedupWindowMs,
      options.nodeId,
      m.push ?? '',
    );
  }

  function toResult(m: NewMessage, reply: EnqueueReply): Enqueued | AppError {
    const [status, value, , local] = reply;
    if (status === -1) {
      return new AppError('PB_ERR_QUEUE_FULL', `the queue of user ${m.userId} holds ${value} messages`, {
        headers: { 'Retry-After': String(options.retryAfterSeconds) },
        details: { userId: m.userId },
      });
    }
    const id = String(value);
    return { id, userId: m.userId, enqueuedAt: enqueuedAtOf(id), created: status === 1, local: local === 1 };
  }

  async function enqueueMany(messages: NewMessage[]): Promise<Array<Enqueued | AppError>> {
    const now = clock.now();
    const replies = await Promise.all(messages.map((m) => enqueueOne(m, now)));
    const results = messages.map((m, i) => toResult(m, replies[i] as EnqueueReply));
    for (const r of results) if (!(r instanceof AppError) && r.local) options.onLocalEnqueue?.(r.userId, r.id);
    const created = results.filter((r) => !(r instanceof AppError) && r.created).length;
    if (created > 0) metrics.enqueued.inc(created);
    // The users index (for the admin) lists users who have a mailbox: a user enters it when
    // their mailbox is created, so the index is written once per user, not once per message.
    const newUsers = new Set(messages.filter((_, i) => replies[i]?.[2] === 1).map((m) => m.userId));
    if (newUsers.size > 0) await redis.zadd(keys.users(), 'NX', ...[...newUsers].flatMap((u) => [now, u]));
    const pushable = results.flatMap((r, i) => (r instanceof AppError || messages[i]?.push === undefined ? [] : [r]));
    if (pushable.length > 0) await options.onPushable?.(pushable);
    return results;
  }

  function popOne(userId: string, now: number): Promise<PopReply> {
    return redis.pbPop(
      keys.mailbox(userId),
      keys.dead(userId),
      keys.counted(userId),
      keys.lastAck(userId),
      keys.registry(userId),
      keys.drainer(userId),
      options.userChannel(userId),
      ...receiptKeys(keys, userId),
      ...noticeKeys(keys, userId),
      GROUP,
      CONSUMER,
      now,
      options.ackTimeoutMs,
      options.maxInflight,
      options.maxDeliveries,
      options.maxAttempts,
      options.deadMaxLength,
      options.nodeId,
      options.leaseMs,
      spec,
    );
  }


  function toPopResult(reply: PopReply): PopResult {
    const [status, inflight, more, expired, dead, nextDueMs, shared, waitMs, unresponsive, ...entries] = reply;
    if (expired > 0) metrics.expired.inc(expired);
    if (dead > 0) metrics.dead.inc(dead);
    if (status === 0) return { status: 'empty' };
    if (status === 2) return { status: 'not-mine', waitMs };
    return {
      status: 'popped',
      inflight,
      more: more === 1,
      expired,
      dead,
      nextDueMs: nextDueMs < 0 ? undefined : nextDueMs,
      shared: shared === 1,
      unresponsive,
      deliveries: entries.map(([id, event, data, attempts]) => ({ id, event, data, attempts })),
    };
  }

  return {
    keys,
    enqueueMany,

    async enqueue(message) {
      const [result] = await enqueueMany([message]);
      if (result instanceof AppError) throw result;
      if (result === undefined) throw new Error('enqueue returned nothing');
      return result;
    },

    async lengths(userIds) {
      const unique = [...new Set(userIds)];
      const lengths = await Promise.all(unique.map((u) => redis.xlen(keys.mailbox(u))));
      return new Map(unique.map((u, i) => [u, Number(lengths[i])]));
    },

    async pop(userIds) {
      const now = clock.now();
      const replies = await settle(userIds.map((u) => popOne(u, now)));
      return new Map(userIds.map((u, i): [string, PopResult | Error] => {
        const reply = replies[i] as PopReply | Error;
        if (reply instanceof Error) return [u, reply];
        const result = toPopResult(reply);
        const events = result.status === 'popped' ? outboxEvents.popped(result) : 0;
        if (events > 0) options.onOutbox?.(u, events);
        return [u, result];
      }));
    },

    async join(userId, { first, notices }) {
      const [others, found, ...entries] = (await redis.pbJoin(
        keys.mailbox(userId),
        keys.registry(userId),
        keys.firstWrites(userId),
        ...noticeKeys(keys, userId),
        keys.counted(userId),
        keys.expiries(userId),
        GROUP,
        CONSUMER,
        options.nodeId,
        first ? '1' : '0',
        first ? '1' : '0',
        options.maxInflight,
        clock.now(),
        keepsFirstWrites ? '1' : '0',
        notices === true ? '1' : '0',
        EXPIRED_SCAN_MAX,
      )) as JoinReply;
      const [waiting = 0, inflight = 0, count = 0, ids = []] = found;
      return {
        others,
        inflight: entries.map(([id, event, data, attempts, idleMs]) => ({ id, event, data, attempts, idleMs })),
        ...(found.length > 0 ? { notices: { counts: { waiting, inflight }, expired: { count, ids } } } : {}),
      };
    },

    release(userId) {
      return redis.pbRelease(keys.registry(userId), keys.drainer(userId), options.nodeId);
    },

    async ack(userId, ids, upTo) {
      if (ids.length === 0 && upTo === undefined) return { acked: [], wake: false };
      const [count, wake, ...acked] = await redis.pbAck(
        keys.mailbox(userId),
        keys.counted(userId),
        keys.lastAck(userId),
        keys.registry(userId),
        options.userChannel(userId),
        ...receiptKeys(keys, userId),
        GROUP,
        upTo ?? '',
        options.nodeId,
        options.maxInflight,
        clock.now(),
        spec,
        ...ids,
      );
      if (count > 0) metrics.acked.inc(count);
      if (outboxEvents.acked(count) > 0) options.onOutbox?.(userId, count);
      return { acked, wake: wake === 1 };
    },

    async nack(userId, ids, reason = 'failed') {
      if (ids.length === 0) return 0;
      return redis.pbNack(keys.mailbox(userId), keys.lastAck(userId), keys.counted(userId), GROUP, clock.now(), reason, ...ids);
    },
  };
}
