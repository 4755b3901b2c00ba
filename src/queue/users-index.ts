import type { Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { withScripts } from './scripts.js';

/** One entry of the users index: a user and the score it entered with (epoch ms, as text). */
export interface IndexEntry {
  userId: string;
  score: string;
}

/**
 * The users index (`keys.users()`): every user who has a mailbox or dead
 * letters, so the admin can list them and housekeeping can sweep them. The
 * enqueue that creates a mailbox adds its user (src/queue/mailbox.ts); this
 * module pages the index and is the one routine that removes users from it,
 * only once their keys are gone, so a user keeps its place (its score) for as
 * long as it has anything.
 */
export interface UsersIndex {
  /** Up to `count` entries in (score, user) order, strictly after `after`. */
  page(after: IndexEntry | undefined, count: number): Promise<IndexEntry[]>;
  /** Removes those of these users whose mailbox and dead letters are gone; returns who was removed. */
  unindexGone(userIds: string[]): Promise<string[]>;
}

export function createUsersIndex(deps: { redis: RedisClient; keys: Keys }): UsersIndex {
  const { keys } = deps;
  const redis = withScripts(deps.redis);

  /** Whether each user still has a mailbox or dead letters. */
  async function present(userIds: string[]): Promise<boolean[]> {
    // One EXISTS per user: a user's two keys share a hash slot, the users do not.
    const counts = await Promise.all(userIds.map((u) => redis.exists(keys.mailbox(u), keys.dead(u))));
    return counts.map((n) => n > 0);
  }

  return {
    async page(after, count) {
      const flat = await redis.pbAdminIndexPage(keys.users(), after?.score ?? '', after?.userId ?? '', count);
      const out: IndexEntry[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) out.push({ userId: flat[i] as string, score: flat[i + 1] as string });
      return out;
    },

    /**
     * A script cannot check a user's keys and ZREM from the index in one step
     * (two hash slots), so this checks, removes, then checks again and puts
     * back (with the same score) whoever got a mailbox meanwhile. An enqueue
     * creating a mailbox runs its XADD before its ZADD NX: if the XADD comes
     * before our second check, we put the user back; if after, its ZADD comes
     * after our ZREM and adds the user itself. Either way no user with a
     * mailbox stays out of the index.
     */
    async unindexGone(userIds) {
      const unique = [...new Set(userIds)];
      if (unique.length === 0) return [];
      const still = await present(unique);
      const gone = unique.filter((_, i) => !still[i]);
      if (gone.length === 0) return [];
      const scores = await redis.zmscore(keys.users(), ...gone);
      await redis.zrem(keys.users(), ...gone);
      const back = await present(gone);
      const readd = gone.flatMap((u, i) => (back[i] && scores[i] !== null ? [scores[i] as string, u] : []));
      if (readd.length > 0) await redis.zadd(keys.users(), 'NX', ...readd);
      return gone.filter((_, i) => !back[i]);
    },
  };
}
