import type { Queue } from 'bullmq';
import type { PushJobData } from './job-queues.js';
import type { Keys } from './keys.js';
import type { RedisClient } from './redis.js';

/**
 * BullMQ job ids may not contain `:`, which user ids may. The user id goes in as base64url and
 * the parts are joined by `.`, which neither base64url, an event id (`<ms>-<seq>`) nor a
 * subscription id contains, so two messages never share a job id.
 */
function userPart(userId: string): string {
  return Buffer.from(userId).toString('base64url');
}

/** The check job of one message: the same message always has the same job, so a repeat adds none. */
export function pushCheckJobId(userId: string, id: string): string {
  return `pc.${userPart(userId)}.${id}`;
}

/** The send job of one message to one subscription. */
export function pushSendJobId(userId: string, id: string, subscription: string): string {
  return `ps.${userPart(userId)}.${id}.${subscription}`;
}

export interface PushJobs {
  /** Plans the Web Push of these messages: a check each, delayed by PUSH_AFTER_MS (the mailbox's `onPushable`). */
  plan(messages: Array<{ userId: string; id: string }>): Promise<void>;
}

/**
 * The enqueue side of Web Push: one delayed BullMQ job per pushable message of a user who has
 * a subscription, added in one bulk call per enqueue. Sending never happens here, so a slow push
 * service cannot slow an enqueue; what the enqueue pays is one HLEN per user and one job add
 * per message that may be pushed. (A user who subscribes after a message was enqueued gets the
 * pushes of the messages enqueued after.)
 */
export function createPushJobs(deps: { queue: Queue<PushJobData>; redis: RedisClient; keys: Keys; pushAfterMs: number }): PushJobs {
  const { queue, redis, keys, pushAfterMs } = deps;
  return {
    async plan(messages) {
      const users = [...new Set(messages.map((m) => m.userId))];
      // One command per user, issued together: auto-pipelined, and routed by slot on a cluster.
      const counts = await Promise.all(users.map((u) => redis.hlen(keys.push(u))));
      const subscribed = new Set(users.filter((_, i) => (counts[i] ?? 0) > 0));
      const planned = messages.filter((m) => subscribed.has(m.userId));
      if (planned.length === 0) return;
      await queue.addBulk(
        planned.map(({ userId, id }) => ({
          name: 'check',
          data: { kind: 'check' as const, userId, id },
          opts: { jobId: pushCheckJobId(userId, id), delay: pushAfterMs },
        })),
      );
    },
  };
}
