import type { Metrics } from '../../metrics/metrics.js';
import { GROUP, type Keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { withScripts, type ScriptedRedis } from '../scripts.js';

export interface RetryResult {
  retried: number;
  /** The new event ids of the retried messages, in the order they were queued. */
  ids: string[];
  /** Requested ids that are not among the user's dead letters. */
  notFound: string[];
  /** The mailbox reached QUEUE_MAX_LENGTH; the rest stayed dead letters. */
  queueFull: boolean;
}

/** Dead letters read per round trip. */
const CHUNK = 500;

export interface Repairs {
  /** Removes every waiting, in-flight and dead message; undefined for an unknown user. */
  purge(userId: string): Promise<{ waiting: number; inflight: number; dead: number } | undefined>;
  /** Moves dead letters (all, or those with these original event ids) back to the mailbox; undefined for an unknown user. */
  retryDead(userId: string, ids?: string[]): Promise<RetryResult | undefined>;
  /** Removes one waiting or in-flight message: 'removed', or which of the two is missing. */
  deleteMessage(userId: string, id: string): Promise<'removed' | 'no-user' | 'no-message'>;
}

/**
 * The admin's changes to one user's queue. Each multi-key step is a Lua script
 * on the user's keys (one hash slot). A purge leaves the mailbox empty (the
 * user still reads as known) and in the users index; housekeeping removes it
 * once idle.
 */
export function createRepairs(deps: {
  redis: RedisClient;
  keys: Keys;
  metrics: Metrics;
  /** Retried dead letters stop at this mailbox length (QUEUE_MAX_LENGTH). */
  queueMaxLength: number;
  /** The pub/sub channel of a user (src/delivery/wake.ts), on which retried letters wake the nodes holding them. */
  userChannel: (userId: string) => string;
}): Repairs {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { keys, metrics, queueMaxLength, userChannel } = deps;

  async function known(userId: string): Promise<boolean> {
    return (await redis.exists(keys.mailbox(userId), keys.dead(userId))) > 0;
  }

  /** Dead-letter entry ids (their own stream ids) with their original event ids, oldest first, in chunks. */
  async function* deadEntries(userId: string): AsyncGenerator<Array<{ entryId: string; id: string }>> {
    let start = '-';
    for (;;) {
      const chunk = await redis.xrange(keys.dead(userId), start, '+', 'COUNT', CHUNK);
      if (chunk.length === 0) return;
      yield chunk.map(([entryId, flat]) => ({ entryId, id: originalId(flat) ?? entryId }));
      if (chunk.length < CHUNK) return;
      start = `(${chunk[chunk.length - 1]?.[0]}`;
    }
  }

  return {
    async purge(userId) {
      const [isKnown, waiting, inflight, dead] = await redis.pbAdminPurge(keys.mailbox(userId), keys.dead(userId), keys.counted(userId), GROUP);
      if (isKnown === 0) return undefined;
      // What pop.lua kept for the receipts of the messages in flight goes with them.
      await redis.del(keys.firstWrites(userId));
      return { waiting, inflight, dead };
    },

    async retryDead(userId, ids) {
      if (!(await known(userId))) return undefined;
      const wanted = ids === undefined ? undefined : new Set(ids);
      const result: RetryResult = { retried: 0, ids: [], notFound: [], queueFull: false };
      // Read, then move by entry id: the script re-checks each entry, so a
      // concurrent retry of the same letters moves each one once.
      for await (const chunk of deadEntries(userId)) {
        const picked = wanted === undefined ? chunk : chunk.filter((e) => wanted.delete(e.id));
        if (picked.length > 0) {
          const [full, ...newIds] = await redis.pbAdminRetry(
            keys.mailbox(userId),
            keys.dead(userId),
            keys.registry(userId),
            userChannel(userId),
            GROUP,
            queueMaxLength,
            ...picked.map((e) => e.entryId),
          );
          result.ids.push(...newIds);
          if (full === 1) {
            result.queueFull = true;
            break;
          }
        }
        if (wanted !== undefined && wanted.size === 0) break;
      }
      result.retried = result.ids.length;
      if (wanted !== undefined && !result.queueFull) result.notFound = [...wanted];
      // Retried letters are new messages in the mailbox; the user is in the index already (it has dead letters).
      if (result.retried > 0) metrics.enqueued.inc(result.retried);
      return result;
    },

    async deleteMessage(userId, id) {
      if ((await redis.pbAdminDelete(keys.mailbox(userId), keys.counted(userId), GROUP, id)) === 1) {
        await redis.hdel(keys.firstWrites(userId), id);
        return 'removed';
      }
      return (await known(userId)) ? 'no-message' : 'no-user';
    },
  };
}

function originalId(flat: string[]): string | undefined {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === 'id') return flat[i + 1];
  return undefined;
}
