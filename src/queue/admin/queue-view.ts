import type { Clock } from '../../clock.js';
import { GROUP, enqueuedAtOf, type Keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { withScripts, type ScriptedRedis } from '../scripts.js';
import { readCounts } from './queue-listing.js';

export interface QueueView {
  userId: string;
  /** Counts as in the listing: messages past their TTL (not swept yet) are in `expired` only. */
  waiting: number;
  inflight: number;
  expired: number;
  dead: number;
  /** The oldest messages waiting and not expired; `enqueuedAt` ISO 8601. */
  oldestWaiting: Array<{ id: string; event: string; data: unknown; enqueuedAt: string }>;
  /** `deliveries`: those that counted toward MAX_DELIVERIES; `attempts`: every write of it (toward MAX_ATTEMPTS). */
  inflightMessages: Array<{ id: string; deliveries: number; attempts: number; idleMs: number }>;
  deadLetters: Array<{
    id: string;
    event: string;
    data: unknown;
    deliveries: number;
    attempts: number;
    reason: string;
    /** ISO 8601. */
    deadAt: string;
  }>;
}

/** One user's queue in detail, for the admin's drill-down; undefined for an unknown user. */
export type Inspect = (userId: string, limit?: number) => Promise<QueueView | undefined>;

/**
 * Reads one user's queue for the admin: counts, the oldest waiting messages,
 * what is in flight with its delivery count and idle time, and dead letters.
 * Read-only, and off the hot path (the mailbox does not carry it).
 */
export function createInspect(deps: {
  redis: RedisClient;
  clock: Clock;
  keys: Keys;
  /** In-flight entries sit among the oldest; MAX_INFLIGHT of them are read past. */
  maxInflight: number;
}): Inspect {
  const { keys, clock, maxInflight } = deps;
  const redis: ScriptedRedis = withScripts(deps.redis);
  return async function inspect(userId, limit = 50) {
    const mailbox = keys.mailbox(userId);
    const deadKey = keys.dead(userId);
    const [hasMailbox, deadLength] = await Promise.all([redis.exists(mailbox), redis.xlen(deadKey)]);
    if (!hasMailbox && deadLength === 0) return undefined;
    const now = clock.now();
    const [counts, pending, oldest, dead] = hasMailbox
      ? await Promise.all([
          readCounts(redis, keys, userId, now),
          redis.call('XPENDING', mailbox, GROUP, 'IDLE', 0, '-', '+', limit) as Promise<PendingRow[]>,
          // In-flight entries sit among the oldest; read past them to show `limit` waiting ones.
          redis.xrange(mailbox, '-', '+', 'COUNT', limit + maxInflight),
          redis.xrevrange(deadKey, '+', '-', 'COUNT', limit),
        ])
      : [
          { waiting: 0, inflight: 0, expired: 0, dead: deadLength, oldest: '' },
          [] as PendingRow[],
          [],
          await redis.xrevrange(deadKey, '+', '-', 'COUNT', limit),
        ];
    const inflightIds = new Set(pending.map((p) => p[0]));
    // Past their TTL: never delivered again, so shown in neither list (housekeeping sweeps them).
    const expiredIds = new Set(
      pending.length === 0 ? [] : await redis.zrange(keys.expiries(userId), '-inf', now, 'BYSCORE', 'LIMIT', 0, 1000),
    );
    const alive = pending.filter(([id]) => !expiredIds.has(id));
    const counted = alive.length === 0 ? [] : await redis.hmget(keys.counted(userId), ...alive.map((p) => p[0]));
    return {
      userId,
      waiting: counts.waiting,
      inflight: counts.inflight,
      expired: counts.expired,
      dead: deadLength,
      oldestWaiting: oldest
        .filter(([id, flat]) => !inflightIds.has(id) && !isExpired(fields(flat), now))
        .slice(0, limit)
        .map(([id, flat]) => {
          const f = fields(flat);
          return { id, event: f.e ?? 'message', data: parseData(f.d), enqueuedAt: new Date(enqueuedAtOf(id)).toISOString() };
        }),
      inflightMessages: alive.map(([id, , idleMs, attempts], i) => ({
        id,
        deliveries: Number(counted[i] ?? 0),
        attempts,
        idleMs,
      })),
      deadLetters: dead.map(([, flat]) => {
        const f = fields(flat);
        return {
          id: f.id ?? '',
          event: f.e ?? 'message',
          data: parseData(f.d),
          deliveries: Number(f.n),
          // Letters from before attempts were kept apart counted every write as a delivery.
          attempts: Number(f.a ?? f.n),
          reason: f.r ?? 'unknown',
          deadAt: new Date(Number(f.at)).toISOString(),
        };
      }),
    };
  };
}

type PendingRow = [id: string, consumer: string, idleMs: number, attempts: number];

/** As pop.lua decides it: an entry whose expiry (`x`, epoch ms) is at or before now. */
function isExpired(f: Record<string, string | undefined>, now: number): boolean {
  return f.x !== undefined && Number(f.x) <= now;
}

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
