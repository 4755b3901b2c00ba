import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { createHousekeeper } from '../queue/housekeeping.js';
import { createJobQueues, warnOnEviction, type JobQueues } from '../queue/jobs.js';
import type { Mailbox } from '../queue/mailbox.js';
import { createRooms, type Rooms } from '../queue/rooms.js';
import { createSchedules, type Schedules } from '../queue/schedules.js';
import { createFanoutWorker } from './fanout-worker.js';
import { createHousekeepingWorker } from './housekeeping-worker.js';
import { createScheduledWorker, type JobWorker } from './scheduled-worker.js';

export interface JobServices {
  queues: JobQueues;
  schedules: Schedules;
  rooms: Rooms;
  workers: JobWorker[];
  /** Stops the workers (a fan-out under way hands its job back at its cursor), then the queues. */
  close(): Promise<void>;
}

/**
 * The BullMQ side of one node: queues (fail-fast producer connections),
 * scheduled, fan-out and housekeeping workers (each on its own connections),
 * and the services the routes use. Workers append through `mailbox`, on the
 * node's command connection.
 */
export async function startJobServices(deps: {
  config: Config;
  redisUrl: string;
  redis: Redis;
  mailbox: Mailbox;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
}): Promise<JobServices> {
  const { config, redisUrl, redis, mailbox, metrics, logger, clock } = deps;
  await warnOnEviction(redis, logger);
  const queues = await createJobQueues({ redisUrl, keyPrefix: config.KEY_PREFIX, logger });
  const keys = mailbox.keys;
  const rooms = createRooms({ redis, keys });
  const schedules = createSchedules({ queues, redis, keys, clock });
  const common = { redisUrl, keyPrefix: config.KEY_PREFIX, lockMs: config.JOB_LOCK_MS };
  const workers: JobWorker[] = [];
  try {
    workers.push(createScheduledWorker({ mailbox, metrics, logger, options: common }));
    workers.push(
      createFanoutWorker({
        mailbox,
        rooms,
        clock,
        metrics,
        logger,
        // Fan-out keys need only outlive the job's retries: the producers' 24 h window
        // would keep a record per member and room message for a day.
        options: { ...common, chunkSize: config.FANOUT_CHUNK_SIZE, dedupWindowMs: config.FANOUT_DEDUP_WINDOW_MS },
      }),
    );
    const housekeeper = createHousekeeper({ redis, keys, clock });
    workers.push(
      await createHousekeepingWorker({
        queues,
        housekeeper,
        metrics,
        logger,
        clock,
        options: { ...common, intervalMs: config.HOUSEKEEPING_INTERVAL_MS },
      }),
    );
    // Ready before the node answers requests: its first stalled-job check runs as it starts.
    await Promise.all(workers.map((w) => w.worker.waitUntilReady()));
  } catch (err) {
    await Promise.allSettled(workers.map((w) => w.close()));
    await queues.close();
    throw err;
  }

  return {
    queues,
    schedules,
    rooms,
    workers,
    async close() {
      await Promise.allSettled(workers.map((w) => w.close()));
      await queues.close();
    },
  };
}
