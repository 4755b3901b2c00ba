import type { Queue } from 'bullmq';
import type { PushJobData } from './job-queues.js';

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
 * The enqueue side of Web Push: one delayed BullMQ job per pushable message, added in one
 * bulk call per enqueue. Sending never happens here, so a slow push service cannot slow an
 * enqueue; what the enqueue pays is one job add per message with a `push` option.
 */
export function createPushJobs(deps: { queue: Queue<PushJobData>; pushAfterMs: number }): PushJobs {
  const { queue, pushAfterMs } = deps;
  return {
    async plan(messages) {
      await queue.addBulk(
        messages.map(({ userId, id }) => ({
          name: 'check',
          data: { kind: 'check' as const, userId, id },
          opts: { jobId: pushCheckJobId(userId, id), delay: pushAfterMs },
        })),
      );
    },
  };
}
