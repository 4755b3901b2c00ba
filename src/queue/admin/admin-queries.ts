import type { Queue } from 'bullmq';
import type { Clock } from '../../clock.js';
import type { Metrics } from '../../metrics/metrics.js';
import type { DeliverJobData, FanoutJobData } from '../job-queues.js';
import type { Keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import type { Rooms } from '../rooms.js';
import { createUsersIndex } from '../users-index.js';
import { listRooms, recentFanouts, type FanoutView, type RoomRow } from './admin-rooms.js';
import { countScheduled, type ScheduledCount } from './admin-scheduled.js';
import { createQueueListing, type QueueListing } from './queue-listing.js';
import { createInspect, type Inspect } from './queue-view.js';
import { createRepairs, type Repairs } from './repairs.js';

export interface AdminQueriesOptions {
  /** Retried dead letters stop at this mailbox length (QUEUE_MAX_LENGTH). */
  queueMaxLength: number;
  /** Index entries one sorted listing or stats request reads at most (ADMIN_SCAN_MAX_USERS). */
  scanMaxUsers: number;
  /** MAX_INFLIGHT, to read past the in-flight messages to the waiting ones. */
  maxInflight: number;
  /** Pending scheduled jobs read at most to count one user's. @defaultValue 2000 */
  scheduledScanMax?: number;
}

export interface RoomDetail {
  members: number;
  /** Up to `limit` members in name order after the cursor. */
  page: string[];
  nextCursor: string | null;
  fanouts: FanoutView[];
}

/**
 * The read side (and the repairs) of the admin, in one object built by the
 * wiring: queue listings and totals, one user's queue in detail, purge, retry
 * and delete, rooms with their recent fan-outs, and scheduled counts.
 */
export interface AdminQueries extends QueueListing, Repairs {
  inspect: Inspect;
  rooms(after: string | undefined, limit: number): Promise<{ rooms: RoomRow[]; nextCursor: string | null }>;
  /** One room's members and recent fan-outs; undefined when the room has no members. */
  room(room: string, after: string | undefined, limit: number): Promise<RoomDetail | undefined>;
  scheduledCount(userId: string): Promise<ScheduledCount>;
}

export function createAdminQueries(deps: {
  redis: RedisClient;
  clock: Clock;
  keys: Keys;
  metrics: Metrics;
  rooms: Rooms;
  queues: { scheduled: Queue<DeliverJobData>; fanout: Queue<FanoutJobData> };
  /** The pub/sub channel of a user (src/delivery/wake.ts). */
  userChannel: (userId: string) => string;
  options: AdminQueriesOptions;
}): AdminQueries {
  const { redis, clock, keys, metrics, rooms, queues, userChannel, options } = deps;
  const index = createUsersIndex({ redis, keys });
  const listing = createQueueListing({ redis, clock, keys, index, scanMaxUsers: options.scanMaxUsers });
  const repairs = createRepairs({ redis, keys, metrics, queueMaxLength: options.queueMaxLength, userChannel });
  return {
    list: listing.list,
    totals: listing.totals,
    purge: repairs.purge,
    retryDead: repairs.retryDead,
    deleteMessage: repairs.deleteMessage,
    inspect: createInspect({ redis, clock, keys, maxInflight: options.maxInflight }),
    rooms: (after, limit) => listRooms(redis, keys, after, limit),
    async room(room, after, limit) {
      // One extra member tells whether another page exists.
      const [{ members }, page, fanouts] = await Promise.all([
        rooms.count(room),
        rooms.page(room, after, limit + 1),
        recentFanouts(queues.fanout, room),
      ]);
      if (members === 0) return undefined;
      const shown = page.slice(0, limit);
      return { members, page: shown, nextCursor: page.length > limit ? (shown[shown.length - 1] ?? null) : null, fanouts };
    },
    scheduledCount: (userId) => countScheduled(queues.scheduled, userId, options.scheduledScanMax ?? 2000),
  };
}
