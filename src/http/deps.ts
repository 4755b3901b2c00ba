import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { DrainWorker } from '../workers/drain-worker.js';
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
  logger: Logger;
  clock: Clock;
  /** Publishes a wake for a user to every node (the one holding their stream drains at once). */
  wake(userId: string): void;
  /** True once shutdown began: new streams are refused. */
  isClosing(): boolean;
}
