import { Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { Gauge } from 'prom-client';
import type { Metrics } from '../metrics/metrics.js';
import type { Housekeeper, SweepResult } from '../queue/housekeeping.js';
import { QUEUE_NAMES, logBullErrors, type JobQueues } from '../queue/job-queues.js';
import { workerConnection, workerOptions, type JobWorker, type JobWorkerSettings } from './job-worker.js';

export interface HousekeepingWorkerOptions extends JobWorkerSettings {
  /** HOUSEKEEPING_INTERVAL_MS. */
  intervalMs: number;
}

/** Id of the one job scheduler every node upserts; the last node to start sets the interval. */
export const HOUSEKEEPING_SCHEDULER = 'housekeeping';

/**
 * Runs the housekeeping sweep as a BullMQ job scheduler, so one node of many
 * sweeps each period. The last run (of whichever node) is read back from
 * Redis for `/metrics`; the node that swept also counts the expired messages
 * in `postbox_messages_expired_total`.
 */
export async function createHousekeepingWorker(deps: {
  queues: JobQueues;
  housekeeper: Housekeeper;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  options: HousekeepingWorkerOptions;
}): Promise<JobWorker> {
  const { queues, housekeeper, metrics, logger, clock, options } = deps;
  let last: SweepResult | undefined;
  const refresh = async () => {
    try {
      last = (await housekeeper.lastRun()) ?? last;
    } catch {
      // Redis away: show the last value read rather than fail the whole scrape.
    }
  };
  const registers = [metrics.registry];
  new Gauge({
    name: 'postbox_housekeeping_last_run_seconds',
    help: 'When the last housekeeping sweep (of any node) ended, Unix time in seconds; 0 before the first',
    registers,
    async collect() {
      await refresh();
      this.set(last === undefined ? 0 : last.at / 1000);
    },
  });
  new Gauge({
    name: 'postbox_housekeeping_last_expired',
    help: 'Messages past their TTL dropped by the last housekeeping sweep',
    registers,
    async collect() {
      await refresh();
      this.set(last?.expired ?? 0);
    },
  });

  const link = workerConnection(options);
  const worker = new Worker(
    QUEUE_NAMES.housekeeping,
    async () => {
      const run = await housekeeper.sweep();
      if (run.expired > 0) metrics.expired.inc(run.expired);
      logger.debug({ ...run }, 'housekeeping sweep done');
      return run;
    },
    workerOptions(options, link.connection),
  );
  logBullErrors(worker, logger, clock, 'housekeeping worker');
  worker.on('failed', (_job, err) => logger.warn({ err }, 'housekeeping sweep failed'));
  // First sweep one interval after start (an `every` scheduler would otherwise run at once on every
  // node start), so a restart loop cannot turn housekeeping into a constant load.
  await queues.housekeeping.upsertJobScheduler(
    HOUSEKEEPING_SCHEDULER,
    { every: options.intervalMs, startDate: clock.now() + options.intervalMs },
    { name: 'sweep' },
  );
  return {
    worker,
    async close() {
      await worker.close();
      link.release();
    },
  };
}
