import type { Logger } from 'pino';
import type { RedisClient } from '../queue/redis.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { createHousekeeper } from '../queue/housekeeping.js';
import type { JobQueues } from '../queue/job-queues.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { Rooms } from '../queue/rooms.js';
import { createFanoutWorker } from './fanout-worker.js';
import { createHousekeepingWorker } from './housekeeping-worker.js';
import type { JobWorker, JobWorkerSettings } from './job-worker.js';
import { createPushWorker, type PushWorkerOptions } from './push-worker.js';
import { createScheduledWorker } from './scheduled-worker.js';
import type { WebhookMetrics } from './webhook-metrics.js';
import { createWebhookWorker } from './webhook-worker.js';

export interface JobWorkersOptions extends JobWorkerSettings {
  /** FANOUT_CHUNK_SIZE. */
  fanoutChunkSize: number;
  /** FANOUT_DEDUP_WINDOW_MS. */
  fanoutDedupWindowMs: number;
  /** HOUSEKEEPING_INTERVAL_MS. */
  housekeepingIntervalMs: number;
  /** What expire.lua records of expired messages (src/queue/receipts.ts `receiptSpec`). @defaultValue none */
  receiptSpec?: string;
  /** Webhooks: where and how to POST the batches; none when WEBHOOK_URL is not set. */
  webhooks?: { url: string; secret: string; timeoutMs: number; metrics: WebhookMetrics } | undefined;
}

export interface JobWorkers {
  workers: JobWorker[];
  /** Stops the workers; a fan-out under way hands its job back at its cursor. */
  close(): Promise<void>;
}

/**
 * The BullMQ workers of one node: scheduled, fan-out, housekeeping and (when on) push, each on
 * its own connections. They append through `mailbox`, on the node's command
 * connection.
 */
export async function startJobWorkers(deps: {
  queues: JobQueues;
  redis: RedisClient;
  mailbox: Mailbox;
  rooms: Rooms;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  options: JobWorkersOptions;
  /** The housekeeping sweep found webhook outbox entries of this user (src/queue/webhook-outbox.ts). */
  onOutbox?: (userId: string) => void;
  /** The Web Push worker's own parts, when push is on (wired in src/postbox.ts). */
  push?: Omit<Parameters<typeof createPushWorker>[0], 'logger' | 'clock' | 'options'> & {
    options: Omit<PushWorkerOptions, keyof JobWorkerSettings>;
  };
}): Promise<JobWorkers> {
  const { queues, redis, mailbox, rooms, metrics, logger, clock, options, push } = deps;
  const settings: JobWorkerSettings = { redis: options.redis, keyPrefix: options.keyPrefix, lockMs: options.lockMs };
  const workers: JobWorker[] = [];
  try {
    workers.push(createScheduledWorker({ mailbox, logger, clock, options: settings }));
    workers.push(
      createFanoutWorker({
        mailbox,
        rooms,
        clock,
        logger,
        // Fan-out keys need only outlive the job's retries: the producers' 24 h window
        // would keep a record per member and room message for a day.
        options: { ...settings, chunkSize: options.fanoutChunkSize, dedupWindowMs: options.fanoutDedupWindowMs },
      }),
    );
    workers.push(
      await createHousekeepingWorker({
        queues,
        housekeeper: createHousekeeper({
          redis,
          keys: mailbox.keys,
          clock,
          options: {
            ...(options.receiptSpec === undefined ? {} : { receiptSpec: options.receiptSpec }),
            ...(deps.onOutbox === undefined ? {} : { onOutbox: deps.onOutbox }),
          },
        }),
        metrics,
        logger,
        clock,
        options: { ...settings, intervalMs: options.housekeepingIntervalMs },
      }),
    );
    if (options.webhooks !== undefined) {
      const { metrics: webhookMetrics, ...post } = options.webhooks;
      workers.push(
        createWebhookWorker({ redis, keys: mailbox.keys, metrics: webhookMetrics, logger, clock, options: { ...settings, ...post } }),
      );
    }
    if (push) workers.push(createPushWorker({ ...push, logger, clock, options: { ...settings, ...push.options } }));
    // Ready before the node answers requests: its first stalled-job check runs as it starts.
    await Promise.all(workers.map((w) => w.worker.waitUntilReady()));
  } catch (err) {
    await Promise.allSettled(workers.map((w) => w.close()));
    throw err;
  }
  return {
    workers,
    async close() {
      await Promise.allSettled(workers.map((w) => w.close()));
    },
  };
}
