import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** This node's webhook figures in /metrics (`postbox_webhooks_*`). */
export interface WebhookMetrics {
  /** Events put into batches. */
  queued: Counter;
  /** Events in batches the receiver accepted (2xx). */
  delivered: Counter;
  /** Events in batches given up after WEBHOOK_MAX_ATTEMPTS. */
  failed: Counter;
  /** Events dropped: the queue held WEBHOOK_MAX_BACKLOG batches (`backlog`), or webhooks are off (`disabled`). */
  dropped: Counter<'reason'>;
  /** POSTs by outcome: 2xx, 3xx, 4xx, 5xx, timeout, error (no answer). */
  requests: Counter<'result'>;
  /** Time to the receiver's answer, seconds. */
  requestSeconds: Histogram;
}

/** Registers the webhook metrics on a node's registry; `backlog` counts the batches waiting in the queue. */
export function createWebhookMetrics(registry: Registry, backlog: () => Promise<number>): WebhookMetrics {
  const registers = [registry];
  const metrics: WebhookMetrics = {
    queued: new Counter({ name: 'postbox_webhooks_events_queued_total', help: 'Webhook events put into batches', registers }),
    delivered: new Counter({
      name: 'postbox_webhooks_events_delivered_total',
      help: 'Webhook events in batches the receiver accepted (2xx)',
      registers,
    }),
    failed: new Counter({
      name: 'postbox_webhooks_events_failed_total',
      help: 'Webhook events in batches given up after WEBHOOK_MAX_ATTEMPTS tries',
      registers,
    }),
    dropped: new Counter({
      name: 'postbox_webhooks_events_dropped_total',
      help: 'Webhook events dropped, by reason: backlog (WEBHOOK_MAX_BACKLOG batches waiting) or disabled',
      labelNames: ['reason'],
      registers,
    }),
    requests: new Counter({
      name: 'postbox_webhooks_requests_total',
      help: 'Webhook POSTs by result: 2xx, 3xx, 4xx, 5xx, timeout, error',
      labelNames: ['result'],
      registers,
    }),
    requestSeconds: new Histogram({
      name: 'postbox_webhooks_request_seconds',
      help: 'Time from a webhook POST to its answer, seconds',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  };
  // Every series exists from the start, so "none yet" reads as 0.
  for (const reason of ['backlog', 'disabled']) metrics.dropped.inc({ reason }, 0);
  for (const result of ['2xx', '4xx', '5xx', 'timeout', 'error']) metrics.requests.inc({ result }, 0);
  let last = 0;
  new Gauge({
    name: 'postbox_webhooks_backlog_batches',
    help: 'Webhook batches waiting, retrying or being sent (every node)',
    registers,
    async collect() {
      try {
        last = await backlog();
      } catch {
        // Redis away: the last value read rather than a failed scrape.
      }
      this.set(last);
    },
  });
  return metrics;
}
