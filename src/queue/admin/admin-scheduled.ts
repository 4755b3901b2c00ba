import type { Queue } from 'bullmq';
import type { DeliverJobData } from '../job-queues.js';

/** Jobs read per round trip. */
const PAGE = 250;

export interface ScheduledCount {
  /** The user's messages held as BullMQ jobs (delayed, or due and not yet appended). */
  scheduled: number;
  /** The queue held more pending jobs than were read: `scheduled` counts the first `max` of them (soonest due). */
  truncated: boolean;
}

/**
 * Counts one user's scheduled messages in the `scheduled` queue. BullMQ keeps
 * no index by user, so this reads the pending jobs, soonest first, up to
 * `max` of them (pipelined pages through BullMQ's public API) and counts the
 * user's. Exact while the whole queue holds at most `max` pending jobs; past
 * that it says so with `truncated` rather than guess. An exact count at any
 * size needs a per-user index kept by the scheduling code.
 */
export async function countScheduled(queue: Queue<DeliverJobData>, userId: string, max: number): Promise<ScheduledCount> {
  const types = ['delayed', 'waiting', 'prioritized'] as const;
  const counts = await queue.getJobCounts(...types);
  const total = types.reduce((sum, t) => sum + (counts[t] ?? 0), 0);
  let scheduled = 0;
  let budget = max;
  // One type at a time: BullMQ applies start/end to each type's list separately.
  for (const type of types) {
    const n = Math.min(counts[type] ?? 0, budget);
    budget -= n;
    for (let start = 0; start < n; start += PAGE) {
      for (const job of await queue.getJobs([type], start, Math.min(start + PAGE, n) - 1, true)) {
        if (job?.data?.userId === userId) scheduled += 1;
      }
    }
  }
  return { scheduled, truncated: total > max };
}
