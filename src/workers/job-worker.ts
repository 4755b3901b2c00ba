import type { Worker, WorkerOptions } from 'bullmq';
import { Cluster } from 'ioredis';
import { KEEP_COMPLETED, KEEP_FAILED, bullPrefix } from '../queue/job-queues.js';
import { bullConnection, type RedisConnectionSettings } from '../queue/redis.js';

/** One BullMQ worker of this node. */
export interface JobWorker {
  readonly worker: Worker;
  close(): Promise<void>;
}

/** What every postbox worker is built from. */
export interface JobWorkerSettings {
  redis: RedisConnectionSettings;
  keyPrefix: string;
  /** Lock duration and stalled-check period, ms (JOB_LOCK_MS). */
  lockMs: number;
}

/**
 * A Worker's connection, and how to let it go: on a cluster it is a client of
 * ours that BullMQ does not close.
 */
export function workerConnection(settings: JobWorkerSettings): { connection: WorkerOptions['connection']; release(): void } {
  const connection = bullConnection(settings.redis, 'worker');
  return {
    connection,
    release: () => {
      if (connection instanceof Cluster) connection.disconnect();
    },
  };
}

/**
 * Options every postbox Worker shares. A job whose node dies keeps its lock
 * for `lockMs`; the stalled check (run as often) then hands it to another
 * worker. Retried jobs are idempotent, so several stalls are allowed.
 */
export function workerOptions(
  settings: JobWorkerSettings,
  connection: WorkerOptions['connection'],
  concurrency = 1,
): WorkerOptions {
  return {
    prefix: bullPrefix(settings.keyPrefix),
    connection,
    concurrency,
    lockDuration: settings.lockMs,
    stalledInterval: settings.lockMs,
    maxStalledCount: 10,
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}
