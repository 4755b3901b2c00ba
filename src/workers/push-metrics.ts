import { Counter, Histogram, type Registry } from 'prom-client';

/** Web Push counters, on the node's registry (served at /metrics with the rest). */
export interface PushMetrics {
  /** Pushes a push service accepted (201). */
  sent: Counter;
  /** Pushes given up: `rejected` (a 4xx other than 404/410), `exhausted` (retries ran out), `blocked` (a private endpoint). */
  failed: Counter<'reason'>;
  /** Subscriptions deleted because their push service answered 404 or 410. */
  gone: Counter;
  /** From enqueue (the event id's time) to the push service accepting the push, s: PUSH_AFTER_MS plus waiting and retries. */
  latency: Histogram;
  /** One request to a push service, answer or failure, s. */
  request: Histogram;
}

export function createPushMetrics(registry: Registry): PushMetrics {
  const registers = [registry];
  const failed = new Counter({
    name: 'postbox_push_failed_total',
    help: 'Web Push sends given up, by reason (rejected, exhausted, blocked)',
    labelNames: ['reason'],
    registers,
  });
  // Every series exists from the start, so "no failures" reads as 0.
  for (const reason of ['rejected', 'exhausted', 'blocked']) failed.inc({ reason }, 0);
  return {
    sent: new Counter({ name: 'postbox_push_sent_total', help: 'Web Push messages accepted by push services', registers }),
    failed,
    gone: new Counter({
      name: 'postbox_push_gone_total',
      help: 'Push subscriptions deleted because their push service answered 404 or 410',
      registers,
    }),
    latency: new Histogram({
      name: 'postbox_push_latency_seconds',
      help: 'Time from enqueue to a push service accepting the push of a message',
      buckets: [0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    }),
    request: new Histogram({
      name: 'postbox_push_request_seconds',
      help: 'Duration of one request to a push service',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
}
