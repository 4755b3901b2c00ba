import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { WebhookJobData } from '../queue/job-queues.js';
import type { Keys } from '../queue/keys.js';
import type { RedisClient } from '../queue/redis.js';
import { createWebhookOutbox, type WebhookOutbox } from '../queue/webhook-outbox.js';
import { createWebhookStats, type WebhookStats } from '../queue/webhook-stats.js';
import { createWebhookMetrics, type WebhookMetrics } from './webhook-metrics.js';

export interface Webhooks {
  /** Moves the scripts' webhook events into batches of the webhooks queue. */
  outbox: WebhookOutbox;
  /** The webhooks block of /admin/stats. */
  stats: { read(): Promise<WebhookStats> };
  /** `postbox_webhooks_*` on the node's registry; the webhook worker counts its POSTs here. */
  metrics: WebhookMetrics;
}

/**
 * The webhook parts of one node besides its worker (src/workers/webhook-worker.ts): the outbox,
 * its metrics and the admin's view. With no WEBHOOK_URL they exist all the same, so the admin
 * and /metrics read the same, and events left from when webhooks were on are dropped and counted.
 */
export function createWebhooks(deps: {
  redis: RedisClient;
  keys: Keys;
  queue: Queue<WebhookJobData>;
  registry: Registry;
  clock: Clock;
  logger: Logger;
  nodeId: string;
  options: {
    /** WEBHOOK_URL; undefined when webhooks are off. */
    url: string | undefined;
    /** WEBHOOK_EVENTS. */
    events: readonly string[];
    /** WEBHOOK_MAX_BACKLOG. */
    maxBacklog: number;
  };
}): Webhooks {
  const { redis, keys, queue, options } = deps;
  const metrics = createWebhookMetrics(deps.registry, async () => {
    const counts = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
    return Object.values(counts).reduce((a, b) => a + b, 0);
  });
  const outbox = createWebhookOutbox({
    redis,
    keys,
    queue,
    clock: deps.clock,
    logger: deps.logger,
    options: { nodeId: deps.nodeId, enabled: options.url !== undefined, maxBacklog: options.maxBacklog },
    onQueued: (n) => metrics.queued.inc(n),
    onDropped: (n, reason) => metrics.dropped.inc({ reason }, n),
  });
  const stats = createWebhookStats({ redis, keys, queue, options: { url: options.url, events: options.events } });
  return { outbox, stats, metrics };
}
