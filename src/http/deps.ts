import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { JobQueues } from '../queue/jobs.js';
import type { Rooms } from '../queue/rooms.js';
import type { Schedules } from '../queue/schedules.js';
import type { DrainWorker } from '../workers/drain-worker.js';
import type { RateSampler } from '../workers/rate-sampler.js';
import type { StreamHub } from './stream-hub.js';
import type { Tokens } from './tokens.js';

/** Everything the HTTP layer needs, injected; it never reads process.env. */
export interface AppDeps {
  config: Config;
  redis: Redis;
  mailbox: Mailbox;
  hub: StreamHub;
  drain: DrainWorker;
  tokens: Tokens;
  metrics: Metrics;
  /** Scheduled and recurring messages (BullMQ). */
  schedules: Schedules;
  /** Room membership; room messages fan out through `fanout`. */
  rooms: Rooms;
  /** Adds a room message's fan-out job. */
  fanout: JobQueues['fanout'];
  /** Every BullMQ queue, for the admin: scheduled counts per user and bull-board under /admin/jobs. */
  jobQueues: Pick<JobQueues, 'scheduled' | 'all'>;
  /** Counter samples for the admin's rates and chart, and the open streams of every node. */
  rates: RateSampler;
  logger: Logger;
  clock: Clock;
  /** Publishes a wake for a user to every node (the one holding their stream drains at once). */
  wake(userId: string): void;
  /** True once shutdown began: new streams are refused. */
  isClosing(): boolean;
}
