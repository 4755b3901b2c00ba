import { Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { QUEUE_NAMES, jobIdempotencyKey, logErrorsOnce, workerOptions, type DeliverJobData } from '../queue/jobs.js';
import type { Mailbox } from '../queue/mailbox.js';

export interface ScheduledWorkerOptions {
  redisUrl: string;
  keyPrefix: string;
  /** JOB_LOCK_MS. */
  lockMs: number;
  /** Due messages appended at once. @defaultValue 20 */
  concurrency?: number;
}

export interface JobWorker {
  readonly worker: Worker;
  close(): Promise<void>;
}

/**
 * Appends due scheduled messages and the iterations of recurring schedules to
 * their user's mailbox. The append carries an idempotency key (the producer's,
 * or one derived from the job id), so a job retried after a crash or a lost
 * lock never appends twice. A full mailbox fails the job; BullMQ retries it.
 */
export function createScheduledWorker(deps: {
  mailbox: Mailbox;
  metrics: Metrics;
  logger: Logger;
  options: ScheduledWorkerOptions;
}): JobWorker {
  const { mailbox, metrics, logger, options } = deps;
  const worker = new Worker<DeliverJobData>(
    QUEUE_NAMES.scheduled,
    async (job: Job<DeliverJobData>) => {
      const m = job.data;
      const key = m.key ?? jobIdempotencyKey(QUEUE_NAMES.scheduled, String(job.id));
      const result = await mailbox.enqueue({ userId: m.userId, event: m.event, data: m.data, key, ttlMs: m.ttlMs });
      if (result.created) metrics.enqueued.inc();
      return { id: result.id, created: result.created };
    },
    workerOptions({ ...options, concurrency: options.concurrency ?? 20 }),
  );
  logErrorsOnce(worker, logger, 'scheduled worker');
  worker.on('failed', (job, err) => {
    logger.warn({ err, jobId: job?.id, userId: job?.data.userId, attempts: job?.attemptsMade }, 'scheduled delivery failed');
  });
  return {
    worker,
    close: () => worker.close(),
  };
}
