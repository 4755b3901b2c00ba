import type { Queue } from 'bullmq';
import type { FanoutJobData } from '../job-queues.js';
import type { Keys } from '../keys.js';
import type { RedisClient } from '../redis.js';

export interface RoomRow {
  room: string;
  members: number;
}

export interface FanoutView {
  jobId: string;
  state: 'active' | 'waiting' | 'delayed' | 'completed' | 'failed';
  event: string;
  /** Members when it was sent. */
  members: number;
  delivered: number;
  /** Members whose mailbox was full. */
  skipped: number;
  /** Percent, as the worker reports it. */
  progress: number;
  /** ISO 8601. */
  sentAt: string;
  /** ISO 8601; null while it runs. */
  finishedAt: string | null;
  failedReason: string | null;
}

/**
 * Rooms for the admin, read from the keys src/queue/rooms.ts maintains: the
 * rooms index (score 0, so it pages by name with ZRANGEBYLEX) and one
 * member set per room, counted with ZCARD in one pipeline.
 */
export async function listRooms(
  redis: RedisClient,
  keys: Keys,
  after: string | undefined,
  limit: number,
): Promise<{ rooms: RoomRow[]; nextCursor: string | null }> {
  // One extra tells whether another page exists.
  const names = await redis.zrangebylex(keys.rooms(), after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, limit + 1);
  const page = names.slice(0, limit);
  const counts = await Promise.all(page.map((room) => redis.zcard(keys.room(room))));
  const rooms = page.map((room, i) => ({ room, members: Number(counts[i]) }));
  return { rooms, nextCursor: names.length > limit ? (page[page.length - 1] ?? null) : null };
}

/**
 * The room's fan-out jobs among the most recent `perState` of each state,
 * newest first. BullMQ keeps no index by room, so older ones are not found;
 * completed and failed jobs are bounded by the queue's removeOn* settings anyway.
 */
export async function recentFanouts(queue: Queue<FanoutJobData>, room: string, perState = 200): Promise<FanoutView[]> {
  const states = ['active', 'waiting', 'delayed', 'completed', 'failed'] as const;
  const lists = await Promise.all(states.map((s) => queue.getJobs([s], 0, perState - 1, false)));
  const out: FanoutView[] = [];
  states.forEach((state, i) => {
    for (const job of lists[i] ?? []) {
      if (job?.data?.room !== room || job.id === undefined) continue;
      // A finished job's return value has the final figures; a running one records them in its data.
      const done = (job.returnvalue ?? {}) as { delivered?: number; skipped?: number };
      out.push({
        jobId: job.id,
        state,
        event: job.data.event,
        members: job.data.members,
        delivered: done.delivered ?? job.data.delivered ?? 0,
        skipped: done.skipped ?? job.data.skipped ?? 0,
        progress: typeof job.progress === 'number' ? job.progress : 0,
        sentAt: new Date(job.timestamp).toISOString(),
        finishedAt: job.finishedOn === undefined ? null : new Date(job.finishedOn).toISOString(),
        failedReason: job.failedReason || null,
      });
    }
  });
  // ISO 8601 strings of one format sort as their times do.
  return out.sort((a, b) => (a.sentAt < b.sentAt ? 1 : a.sentAt > b.sentAt ? -1 : 0));
}
