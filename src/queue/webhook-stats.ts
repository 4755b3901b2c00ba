import type { Queue } from 'bullmq';
import type { WebhookJobData } from './job-queues.js';
import type { Keys } from './keys.js';
import type { RedisClient } from './redis.js';

/** The webhooks block of `GET /admin/stats`. Totals are of every node, since the first start. */
export interface WebhookStats {
  enabled: boolean;
  /** WEBHOOK_URL without credentials or query; null when off. */
  endpoint: string | null;
  events: readonly string[];
  /** Batches in the webhooks queue (each up to 100 events). */
  batches: { waiting: number; retrying: number; active: number; failed: number; completed: number };
  /** Events: put into batches, delivered (2xx), given up after WEBHOOK_MAX_ATTEMPTS, dropped (backlog full or webhooks off). */
  totals: { queued: number; delivered: number; failed: number; dropped: number };
  lastDeliveredAt: string | null;
  lastFailure: { at: string; error: string } | null;
}

/** Where the worker records outcomes in the `keys.webhooks()` hash (every node adds to it). */
export const WEBHOOK_FIELDS = {
  queued: 'queued',
  delivered: 'delivered',
  failed: 'failed',
  dropped: 'dropped',
  lastDeliveredAt: 'lastDeliveredAt',
  lastFailureAt: 'lastFailureAt',
  lastFailure: 'lastFailure',
} as const;

/** Shown to operators: the scheme, host and path of the URL only. */
export function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

export function createWebhookStats(deps: {
  redis: RedisClient;
  keys: Keys;
  queue: Queue<WebhookJobData>;
  options: { url: string | undefined; events: readonly string[] };
}): { read(): Promise<WebhookStats> } {
  const { redis, keys, queue, options } = deps;
  return {
    async read() {
      const [h, counts] = await Promise.all([
        redis.hgetall(keys.webhooks()),
        queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed', 'completed'),
      ]);
      const n = (field: string) => Number(h[field] ?? 0);
      const at = (field: string) => (h[field] ? new Date(Number(h[field])).toISOString() : null);
      const failedAt = at(WEBHOOK_FIELDS.lastFailureAt);
      return {
        enabled: options.url !== undefined,
        endpoint: options.url === undefined ? null : redactUrl(options.url),
        events: options.url === undefined ? [] : options.events,
        batches: {
          waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
          retrying: counts.delayed ?? 0,
          active: counts.active ?? 0,
          failed: counts.failed ?? 0,
          completed: counts.completed ?? 0,
        },
        totals: {
          queued: n(WEBHOOK_FIELDS.queued),
          delivered: n(WEBHOOK_FIELDS.delivered),
          failed: n(WEBHOOK_FIELDS.failed),
          dropped: n(WEBHOOK_FIELDS.dropped),
        },
        lastDeliveredAt: at(WEBHOOK_FIELDS.lastDeliveredAt),
        lastFailure: failedAt === null ? null : { at: failedAt, error: h[WEBHOOK_FIELDS.lastFailure] ?? '' },
      };
    },
  };
}
