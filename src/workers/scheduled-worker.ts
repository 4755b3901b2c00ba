import { Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { QUEUE_NAMES, jobIdempotencyKey, logBullErrors, type DeliverJobData } from '../queue/job-queues.js';
import type { Mailbox } from '../queue/mailbox.js';
import { workerConnection, workerOptions, type JobWorker, type JobWorkerSettings } from './job-worker.js';

export interface ScheduledWorkerOptions extends JobWorkerSettings {
  /** Due messages appended at once. @defaultValue 20 */
  concurrency?: number;
}

/**
 * Appends due scheduled messages and the iterations of recurring schedules to
 * their user's mailbox. The append carries an idempotency key (the producer's,
 * or one derived from the job id), so a job retried after a crash or a lost
 * lock never appends twice. A full mailbox fails the job; BullMQ retries it.
 */
export function createScheduledWorker(deps: {
  mailbox: Mailbox;
  logger: Logger;
  clock: Clock;
  options: ScheduledWorkerOptions;
}): JobWorker {
  const { mailbox, logger, clock, options } = deps;
  const link = workerConnection(options);
  const worker = new Worker<DeliverJobData>(
    QUEUE_NAMES.scheduled,
    async (job: Job<DeliverJobData>) => {
      const m = job.data;
      const key = m.key ?? jobIdempotencyKey(QUEUE_NAMES.scheduled, String(job.id));
      const result = await mailbox.enqueue({ userId: m.userId, event: m.event, data: m.data, key, ttlMs: m.ttlMs, push: m.push });
      return { id: result.id, created: result.created };
    },
    workerOptions(options, link.connection, options.concurrency ?? 20),
  );
  logBullErrors(worker, logger, clock, 'scheduled worker');
  worker.on('failed', (job, err) => {
    logger.warn({ err, jobId: job?.id, userId: job?.data.userId, attempts: job?.attemptsMade }, 'scheduled delivery failed');
  });
  return {
    worker,
    close: async () => {
      await worker.close();
      link.release();
    },
  };
}
