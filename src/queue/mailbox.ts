import type { Redis } from 'ioredis';
import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { CONSUMER, GROUP, createKeys, enqueuedAtOf, type Keys } from './keys.js';
import { execPipeline, execPipelineSettled } from './pipeline.js';
import { scriptedPipeline, withScripts, type EnqueueReply, type PopReply, type ScriptedRedis } from './scripts.js';

export interface MailboxOptions {
  /** Prefix of every key. @defaultValue 'pb' */
  keyPrefix: string;
  /** Messages held per user; enqueue beyond it fails with PB_ERR_QUEUE_FULL. */
  queueMaxLength: number;
  /** How long an idempotency key is remembered, ms. */
  dedupWindowMs: number;
  /** In-flight window per user. */
  maxInflight: number;
  /** Deliveries before a message becomes a dead letter. */
  maxDeliveries: number;
  /** Dead letters kept per user (approximately). */
  deadMaxLength: number;
  /** Seconds a producer is told to wait when a queue is full. */
  retryAfterSeconds: number;
  /** The pub/sub channel on which an enqueue for this user wakes the node delivering to them (src/delivery/wake.ts). */
  wakeChannel: (userId: string) => string;
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
}

export interface Enqueued {
  id: string;
  userId: string;
  enqueuedAt: number;
  /** false when the idempotency key had been seen and `id` is the first message's. */
  created: boolean;
}

export interface Delivery {
  id: string;
  event: string;
  data: string;
  /** 1 on the first delivery. */
  deliveries: number;
}

export interface PopResult {
  inflight: number;
  /** New messages may wait beyond the in-flight window. */
  more: boolean;
  expired: number;
  dead: number;
  deliveries: Delivery[];
}

export interface PopRequest {
  userId: string;
  /** In-flight messages idle this long are delivered again; 0 takes all of them (a stream reopened). */
  minIdleMs: number;
}

export interface Mailbox {
  readonly keys: Keys;
  enqueue(message: NewMessage): Promise<Enqueued>;
  /** Enqueues many messages in one pipeline; a full queue yields an AppError in that message's place. */
  enqueueMany(messages: NewMessage[]): Promise<Array<Enqueued | AppError>>;
  /** Mailbox lengths (waiting plus in flight) of these users, in one round trip. */
  lengths(userIds: string[]): Promise<Map<string, number>>;
  /**
   * The next messages to write for each user, in one round trip. A user whose
   * pop failed (a script error, a key that moved) gets its Error in place of a
   * result; the others' results stand.
   */
  pop(requests: PopRequest[]): Promise<Map<string, PopResult | Error>>;
  /** Acknowledges the given in-flight ids of this user; returns how many were (and counts them). */
  ack(userId: string, ids: string[]): Promise<number>;
  /** Acknowledges every in-flight message of this user up to and including `id`. */
  ackUpTo(userId: string, id: string): Promise<number>;
}

/**
 * The hot path of storage: enqueue, pop and ack on the users' Redis Streams.
 * It counts `postbox_messages_enqueued_total` itself, so every way a message
 * enters a mailbox (a producer, a due schedule, a fan-out) is counted once.
 */
export function createMailbox(deps: { redis: Redis; clock: Clock; metrics: Metrics; options: MailboxOptions }): Mailbox {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { clock, metrics, options } = deps;
  const keys = createKeys(options.keyPrefix);

  function enqueueArgs(m: NewMessage, now: number): [string, string, string, ...Array<string | number>] {
    const expiresAt = m.ttlMs === undefined ? 0 : now + m.ttlMs;
    return [
      keys.mailbox(m.userId),
      keys.idempotency(m.userId, m.key ?? ''),
      keys.expiries(m.userId),
      GROUP,
      options.queueMaxLength,
      m.event,
      m.data,
      expiresAt,
      m.key === undefined ? '0' : '1',
      m.dedupWindowMs ?? options.dedupWindowMs,
      options.wakeChannel(m.userId),
      m.userId,
    ];
  }

  function toResult(m: NewMessage, reply: EnqueueReply): Enqueued | AppError {
    const [status, value] = reply;
    if (status === -1) {
      return new AppError('PB_ERR_QUEUE_FULL', `the queue of user ${m.userId} holds ${value} messages`, {
        headers: { 'Retry-After': String(options.retryAfterSeconds) },
        details: { userId: m.userId },
      });
    }
    const id = String(value);
    return { id, userId: m.userId, enqueuedAt: enqueuedAtOf(id), created: status === 1 };
  }

  async function enqueueMany(messages: NewMessage[]): Promise<Array<Enqueued | AppError>> {
    const now = clock.now();
    const pipeline = scriptedPipeline(redis);
    for (const m of messages) pipeline.pbEnqueue(...enqueueArgs(m, now));
    const replies = await execPipeline<EnqueueReply>(pipeline);
    const results = messages.map((m, i) => toResult(m, replies[i] as EnqueueReply));
    const created = results.filter((r) => !(r instanceof AppError) && r.created).length;
    if (created > 0) metrics.enqueued.inc(created);
    // The users index (for the admin) lists users who have a mailbox: a user enters it when
    // their mailbox is created, so the index is written once per user, not once per message.
    const newUsers = new Set(messages.filter((_, i) => replies[i]?.[2] === 1).map((m) => m.userId));
    if (newUsers.size > 0) await redis.zadd(keys.users(), 'NX', ...[...newUsers].flatMap((u) => [now, u]));
    return results;
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
      const pipeline = redis.pipeline();
      for (const u of unique) pipeline.xlen(keys.mailbox(u));
      const replies = await execPipeline<number>(pipeline);
      return new Map(unique.map((u, i) => [u, Number(replies[i])]));
    },

    async pop(requests) {
      const out = new Map<string, PopResult | Error>();
      if (requests.length === 0) return out;
      const now = clock.now();
      const pipeline = scriptedPipeline(redis);
      for (const r of requests) {
        pipeline.pbPop(
          keys.mailbox(r.userId),
          keys.dead(r.userId),
          GROUP,
          CONSUMER,
          now,
          r.minIdleMs,
          options.maxInflight,
          options.maxDeliveries,
          options.deadMaxLength,
        );
      }
      const replies = await execPipelineSettled<PopReply>(pipeline);
      requests.forEach((r, i) => {
        const reply = replies[i];
        if (reply === undefined || !reply.ok) {
          out.set(r.userId, reply?.error ?? new Error('no pop reply'));
          return;
        }
        const [inflight, more, expired, dead, ...entries] = reply.value;
        if (expired > 0) metrics.expired.inc(expired);
        if (dead > 0) metrics.dead.inc(dead);
        out.set(r.userId, {
          inflight,
          more: more === 1,
          expired,
          dead,
          deliveries: entries.map(([id, event, data, deliveries]) => ({ id, event, data, deliveries })),
        });
      });
      return out;
    },

    async ack(userId, ids) {
      if (ids.length === 0) return 0;
      const acked = await redis.pbAck(keys.mailbox(userId), GROUP, '', ...ids);
      if (acked > 0) metrics.acked.inc(acked);
      return acked;
    },

    async ackUpTo(userId, id) {
      const acked = await redis.pbAck(keys.mailbox(userId), GROUP, id);
      if (acked > 0) metrics.acked.inc(acked);
      return acked;
    },
  };
}
