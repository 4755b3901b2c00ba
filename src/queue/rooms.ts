import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';

/**
 * Room membership: one sorted set per room (every score 0, so members are in
 * lexical order and can be paged and fanned out by `ZRANGE … BYLEX` without
 * ever loading a whole room), and an index of rooms for the admin. A room
 * exists while it has members.
 */
export interface Rooms {
  /** Adds members (already present ones are left alone); returns how many were new. */
  join(room: string, userIds: string[]): Promise<number>;
  /** Removes a member; false when the user was not one. */
  leave(room: string, userId: string): Promise<boolean>;
  /** Members of the room and whether `userId` (if given) is one of them, in one round trip. */
  count(room: string, userId?: string): Promise<{ members: number; isMember: boolean }>;
  /** Up to `limit` members in lexical order, strictly after `after` when given. */
  page(room: string, after: string | undefined, limit: number): Promise<string[]>;
}

export function createRooms(deps: { redis: Redis; keys: Keys }): Rooms {
  const { redis, keys } = deps;

  return {
    async join(room, userIds) {
      const pipeline = redis.pipeline();
      const args = userIds.flatMap((u) => [0, u]);
      pipeline.zadd(keys.room(room), ...args);
      pipeline.zadd(keys.rooms(), 'NX', 0, room);
      const replies = (await pipeline.exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      return Number(replies[0]?.[1] ?? 0);
    },

    async leave(room, userId) {
      const key = keys.room(room);
      // ZREM and ZCARD touch one key, so the transaction stays legal in a cluster.
      const replies = (await redis.multi().zrem(key, userId).zcard(key).exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      const removed = Number(replies[0]?.[1] ?? 0) === 1;
      if (removed && Number(replies[1]?.[1] ?? 0) === 0) {
        await redis.zrem(keys.rooms(), room);
        // A join may have landed between the two steps; put the room back in the index then.
        if ((await redis.exists(key)) === 1) await redis.zadd(keys.rooms(), 'NX', 0, room);
      }
      return removed;
    },

    async count(room, userId) {
      const pipeline = redis.pipeline().zcard(keys.room(room));
      if (userId !== undefined) pipeline.zscore(keys.room(room), userId);
      const replies = (await pipeline.exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      return {
        members: Number(replies[0]?.[1] ?? 0),
        isMember: userId !== undefined && replies[1]?.[1] !== null && replies[1]?.[1] !== undefined,
      };
    },

    async page(room, after, limit) {
      const min = after === undefined ? '-' : `(${after}`;
      return redis.zrangebylex(keys.room(room), min, '+', 'LIMIT', 0, limit);
    },
  };
}
