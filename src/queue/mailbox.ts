import type { Redis } from 'ioredis';
import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';
import { CONSUMER, GROUP, createKeys, enqueuedAtOf, type Keys } from './keys.js';
import { scriptedPipeline, withScripts, type PopReply, type ScriptedRedis } from './scripts.js';

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

export interface QueueView {
  userId: string;
  waiting: number;
  inflight: number;
  dead: number;
  oldestWaiting: Array<{ id: string; event: string; data: unknown; enqueuedAt: number }>;
  inflightMessages: Array<{ id: string; deliveries: number; idleMs: number }>;
  deadLetters: Array<{ id: string; event: string; data: unknown; deliveries: number; reason: string; deadAt: number }>;
}

export interface Mailbox {
  readonly keys: Keys;
  enqueue(message: NewMessage): Promise<Enqueued>;
  /** Enqueues many messages in one pipeline; a full queue yields an AppError in that message's place. */
  enqueueMany(messages: NewMessage[]): Promise<Array<Enqueued | AppError>>;
  /** Mailbox lengths (waiting plus in flight) of these users, in one round trip. */
  lengths(userIds: string[]): Promise<Map<string, number>>;
  /** The next messages to write for each user, in one round trip. */
  pop(requests: PopRequest[]): Promise<Map<string, PopResult>>;
  /** Acknowledges the given in-flight ids of this user; returns how many were. */
  ack(userId: string, ids: string[]): Promise<number>;
  /** Acknowledges every in-flight message of this user up to and including `id`. */
  ackUpTo(userId: string, id: string): Promise<number>;
  inspect(userId: string, limit?: number): Promise<QueueView | undefined>;
}

export function createMailbox(deps: { redis: Redis; clock: Clock; options: MailboxOptions }): Mailbox {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { clock, options } = deps;
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
      keys.wakeChannel(),
      m.userId,
    ];
  }

  function toResult(m: NewMessage, reply: [number, string | number]): Enqueued | AppError {
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
    // Index of users for the admin; NX keeps the first time a user was seen.
    for (const userId of new Set(messages.map((m) => m.userId))) pipeline.zadd(keys.users(), 'NX', now, userId);
    const replies = (await pipeline.exec()) ?? [];
    return messages.map((m, i) => {
      const [err, reply] = replies[i] ?? [new Error('missing pipeline reply'), null];
      if (err) throw err;
      return toResult(m, reply as [number, string | number]);
    });
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
      const replies = (await pipeline.exec()) ?? [];
      const out = new Map<string, number>();
      unique.forEach((u, i) => {
        const [err, n] = replies[i] ?? [new Error('missing pipeline reply'), 0];
        if (err) throw err;
        out.set(u, Number(n));
      });
      return out;
    },

    async pop(requests) {
      const out = new Map<string, PopResult>();
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
      const replies = (await pipeline.exec()) ?? [];
      requests.forEach((r, i) => {
        const [err, reply] = replies[i] ?? [new Error('missing pipeline reply'), null];
        if (err) throw err;
        const [inflight, more, expired, dead, ...entries] = reply as PopReply;
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
      return redis.pbAck(keys.mailbox(userId), GROUP, '', ...ids);
    },

    async ackUpTo(userId, id) {
      return redis.pbAck(keys.mailbox(userId), GROUP, id);
    },

    async inspect(userId, limit = 50) {
      const mailbox = keys.mailbox(userId);
      const deadKey = keys.dead(userId);
      const [hasMailbox, deadLength] = await Promise.all([redis.exists(mailbox), redis.xlen(deadKey)]);
      if (!hasMailbox && deadLength === 0) return undefined;
      const [length, summary, pending, oldest, dead] = hasMailbox
        ? await Promise.all([
            redis.xlen(mailbox),
            redis.xpending(mailbox, GROUP) as Promise<[number, ...unknown[]]>,
            redis.call('XPENDING', mailbox, GROUP, 'IDLE', 0, '-', '+', limit) as Promise<PendingRow[]>,
            // In-flight entries sit among the oldest; read past them to show `limit` waiting ones.
            redis.xrange(mailbox, '-', '+', 'COUNT', limit + options.maxInflight),
            redis.xrevrange(deadKey, '+', '-', 'COUNT', limit),
          ])
        : [0, [0] as [number], [] as PendingRow[], [], await redis.xrevrange(deadKey, '+', '-', 'COUNT', limit)];
      const inflight = Number(summary[0]);
      const inflightIds = new Set(pending.map((p) => p[0]));
      return {
        userId,
        waiting: length - inflight,
        inflight,
        dead: deadLength,
        oldestWaiting: oldest
          .filter(([id]) => !inflightIds.has(id))
          .slice(0, limit)
          .map(([id, flat]) => {
            const f = fields(flat);
            return { id, event: f.e ?? 'message', data: parseData(f.d), enqueuedAt: enqueuedAtOf(id) };
          }),
        inflightMessages: pending.map(([id, , idleMs, deliveries]) => ({ id, deliveries, idleMs })),
        deadLetters: dead.map(([, flat]) => {
          const f = fields(flat);
          return {
            id: f.id ?? '',
            event: f.e ?? 'message',
            data: parseData(f.d),
            deliveries: Number(f.n),
            reason: f.r ?? 'unknown',
            deadAt: Number(f.at),
          };
        }),
      };
    },
  };
}

type PendingRow = [id: string, consumer: string, idleMs: number, deliveries: number];

function fields(flat: string[]): Record<string, string | undefined> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

function parseData(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
