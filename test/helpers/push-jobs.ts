import type { Queue } from 'bullmq';
import { pushCheckJobId, pushSendJobId } from '../../src/queue/push-jobs.js';
import type { TestApp } from './start-app.js';

/** The node's `push` queue (present when Web Push is on). */
export function pushQueue(app: TestApp): Queue {
  const queue = app.postbox.queues.find((q) => q.name === 'push');
  if (!queue) throw new Error('this node has no push queue: is Web Push on?');
  return queue;
}

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until a push job has finished and returns what it returned (`{result, ...}`). With
 * `promote`, a job still delayed is made due at once: "the check ran after X" is then a fact of
 * the test, not a timer that must beat another. Polls every 25 ms up to `timeoutMs`.
 */
export async function finishedJob(
  queue: Queue,
  jobId: string,
  options: { promote?: boolean; timeoutMs?: number } = {},
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let last: string = 'unknown';
  while (Date.now() < deadline) {
    last = await queue.getJobState(jobId);
    if (last === 'completed' || last === 'failed') {
      // Read after the state, so the job's result is the final one.
      const job = await queue.getJob(jobId);
      return last === 'completed' ? (job?.returnvalue as Record<string, unknown>) : { failed: job?.failedReason };
    }
    if (last === 'delayed' && options.promote) await (await queue.getJob(jobId))?.promote().catch(() => undefined);
    await pause(25);
  }
  throw new Error(`push job ${jobId} not finished within the deadline (last state: ${last})`);
}

/** The check job of one message, once finished. */
export const finishedCheck = (app: TestApp, userId: string, id: string, options?: { promote?: boolean; timeoutMs?: number }) =>
  finishedJob(pushQueue(app), pushCheckJobId(userId, id), options);

/** The send job of one message to one subscription id, once finished. */
export const finishedSend = (app: TestApp, userId: string, id: string, subscription: string, options?: { timeoutMs?: number }) =>
  finishedJob(pushQueue(app), pushSendJobId(userId, id, subscription), options);

/** One counter or gauge of the node's /metrics, by name and optional label text (`reason="blocked"`). */
export async function metric(app: TestApp, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}
