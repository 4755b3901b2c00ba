import { WaitingError, Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { QUEUE_NAMES, jobIdempotencyKey, logBullErrors, type FanoutJobData } from '../queue/job-queues.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { Rooms } from '../queue/rooms.js';
import { workerConnection, workerOptions, type JobWorker, type JobWorkerSettings } from './job-worker.js';

export interface FanoutWorkerOptions extends JobWorkerSettings {
  /** Members appended per pipelined round trip (FANOUT_CHUNK_SIZE). */
  chunkSize: number;
  /** How long the per-member idempotency keys are kept, ms (FANOUT_DEDUP_WINDOW_MS). */
  dedupWindowMs: number;
  /** Room messages fanned out at once by this node. @defaultValue 2 */
  concurrency?: number;
}

export interface FanoutResult {
  /** Members whose mailbox holds the message (including those done by an earlier attempt). */
  delivered: number;
  /** Members whose mailbox was full. */
  skipped: number;
  /** True when the message's TTL ran out before every member was reached. */
  expired: boolean;
}

/**
 * Appends a room message to every member's mailbox, walking the room in
 * lexical order, `chunkSize` members per pipelined round trip, so a room of
 * any size is never loaded at once and Redis is never blocked for long.
 *
 * Exactly once per member, across crashes: after each chunk the job records
 * its cursor (job data), so a retried or stalled job resumes there; the chunk
 * under way when a node died is appended again, and each member's append
 * carries an idempotency key derived from the job id, so the members already
 * done in it are not appended twice. Those keys are kept for
 * FANOUT_DEDUP_WINDOW_MS, not the producers' DEDUP_WINDOW_MS, to bound memory.
 */
export function createFanoutWorker(deps: {
  mailbox: Mailbox;
  rooms: Rooms;
  clock: Clock;
  logger: Logger;
  options: FanoutWorkerOptions;
}): JobWorker {
  const { mailbox, rooms, clock, logger, options } = deps;
  let closing = false;

  async function fanOut(job: Job<FanoutJobData>, token: string | undefined): Promise<FanoutResult> {
    const d = job.data;
    const key = jobIdempotencyKey(QUEUE_NAMES.fanout, String(job.id));
    let { cursor } = d;
    let delivered = d.delivered ?? 0;
    let skipped = d.skipped ?? 0;
    let walked = delivered + skipped;
    for (;;) {
      if (closing && token !== undefined) {
        // Shutting down: hand the job back at its cursor so another node resumes it at once.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const now = clock.now();
      if (d.expiresAt !== undefined && d.expiresAt <= now) {
        return { delivered, skipped, expired: true };
      }
      const members = await rooms.page(d.room, cursor, options.chunkSize);
      if (members.length === 0) break;
      const targets = members.filter((userId) => userId !== d.exceptUserId);
      const ttlMs = d.expiresAt === undefined ? undefined : d.expiresAt - now;
      const results =
        targets.length === 0
          ? []
          : await mailbox.enqueueMany(targets.map((userId) => ({
              userId,
              event: d.event,
              data: d.data,
              key,
              ttlMs,
              dedupWindowMs: options.dedupWindowMs,
              push: d.push,
            })));
      for (const r of results) {
        // Not created means this job appended it before (an earlier attempt): still delivered once.
        if (r instanceof AppError) skipped += 1;
        else delivered += 1;
      }
      walked += members.length;
      cursor = members[members.length - 1];
      await job.updateData({ ...d, cursor, delivered, skipped });
      await job.updateProgress(Math.min(99, Math.floor((walked / Math.max(1, d.members)) * 100)));
      if (members.length < options.chunkSize) break;
    }
    await job.updateProgress(100);
    if (skipped > 0) logger.warn({ jobId: job.id, room: d.room, skipped }, 'room message skipped members with a full queue');
    return { delivered, skipped, expired: false };
  }

  const link = workerConnection(options);
  const worker = new Worker<FanoutJobData, FanoutResult>(
    QUEUE_NAMES.fanout,
    (job, token) => fanOut(job, token),
    workerOptions(options, link.connection, options.concurrency ?? 2),
  );
  logBullErrors(worker, logger, clock, 'fan-out worker');
  worker.on('failed', (job, err) => {
    logger.warn({ err, jobId: job?.id, room: job?.data.room, attempts: job?.attemptsMade }, 'room fan-out attempt failed');
  });
  return {
    worker,
    async close() {
      closing = true;
      await worker.close();
      link.release();
    },
  };
}
