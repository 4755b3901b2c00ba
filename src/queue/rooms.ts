import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { FanoutJobData, JobQueues } from './job-queues.js';
import type { Keys } from './keys.js';
import type { RedisClient } from './redis.js';

/** A message for every member of a room. */
export interface RoomMessage {
  event: string;
  /** The message's data, already serialised to one line of JSON. */
  data: string;
  /** Usually the sender, who already has the message. */
  exceptUserId?: string | undefined;
  /** Counted from the send: members reached later get what is left; none once it has passed, ms. */
  ttlMs?: number | undefined;
  /** Idempotency: the same key for the same room is one room message (a producer's retry). */
  key?: string | undefined;
  /** The Web Push option of every member's copy, as JSON. */
  push?: string | undefined;
}

/** A room message accepted for fan-out. */
export interface RoomSend {
  jobId: string;
  /** Members who will get it (the room's members, less `exceptUserId`). */
  recipients: number;
}

/**
 * The fan-out job's id, from which every member's idempotency key derives.
 * With a producer `key` it is the same for the same room and key: BullMQ adds
 * no second job while the first is kept, and after that the members' mailboxes
 * still refuse it again within FANOUT_DEDUP_WINDOW_MS. Without one it is
 * random, so it never repeats even if BullMQ's counter starts over.
 */
function roomJobId(room: string, key: string | undefined): string {
  if (key === undefined) return `r-${randomUUID()}`;
  return `rk-${createHash('sha256').update(`${room}\n${key}`).digest('base64url')}`;
}

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
  /**
   * Adds the fan-out job of a room message (src/workers/fanout-worker.ts);
   * undefined when the room has no members.
   */
  send(room: string, message: RoomMessage): Promise<RoomSend | undefined>;
}

export function createRooms(deps: { redis: RedisClient; keys: Keys; fanout: JobQueues['fanout']; clock: Clock }): Rooms {
  const { redis, keys, fanout, clock } = deps;

  async function count(room: string, userId?: string): Promise<{ members: number; isMember: boolean }> {
    const [members, score] = await Promise.all([
      redis.zcard(keys.room(room)),
      userId === undefined ? null : redis.zscore(keys.room(room), userId),
    ]);
    return { members: Number(members), isMember: score !== null };
  }

  return {
    async join(room, userIds) {
      // Two keys in two hash slots: two commands, sent together.
      const [added] = await Promise.all([
        redis.zadd(keys.room(room), ...userIds.flatMap((u) => [0, u])),
        redis.zadd(keys.rooms(), 'NX', 0, room),
      ]);
      return Number(added);
    },

    async leave(room, userId) {
      const key = keys.room(room);
      // ZREM and ZCARD touch one key, so the transaction stays legal in a cluster.
      const replies = (await redis.multi().zrem(key, userId).zcard(key).exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      const [removedCount, left] = replies.map(([, value]) => Number(value));
      const removed = removedCount === 1;
      if (removed && Number(left) === 0) {
        await redis.zrem(keys.rooms(), room);
        // A join may have landed between the two steps; put the room back in the index then.
        if ((await redis.exists(key)) === 1) await redis.zadd(keys.rooms(), 'NX', 0, room);
      }
      return removed;
    },

    count,

    async page(room, after, limit) {
      const min = after === undefined ? '-' : `(${after}`;
      return redis.zrangebylex(keys.room(room), min, '+', 'LIMIT', 0, limit);
    },

    async send(room, message) {
      const { members, isMember } = await count(room, message.exceptUserId);
      if (members === 0) return undefined;
      const data: FanoutJobData = {
        room,
        event: message.event,
        data: message.data,
        exceptUserId: message.exceptUserId,
        expiresAt: message.ttlMs === undefined ? undefined : clock.now() + message.ttlMs,
        ...(message.push === undefined ? {} : { push: message.push }),
        members,
      };
      const job = await fanout.add('room-message', data, { jobId: roomJobId(room, message.key) });
      return { jobId: String(job.id), recipients: members - (isMember ? 1 : 0) };
    },
  };
}
