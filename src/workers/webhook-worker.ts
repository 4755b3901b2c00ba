import { performance } from 'node:perf_hooks';
import { Worker, type Job, type MinimalJob } from 'bullmq';
import type { Logger } from 'pino';
import { Webhook } from 'standardwebhooks';
import type { Clock } from '../clock.js';
import { QUEUE_NAMES, logBullErrors, type WebhookJobData } from '../queue/job-queues.js';
import type { Keys } from '../queue/keys.js';
import type { RedisClient } from '../queue/redis.js';
import { WEBHOOK_FIELDS } from '../queue/webhook-stats.js';
import type { WebhookMetrics } from './webhook-metrics.js';
import { workerConnection, workerOptions, type JobWorker, type JobWorkerSettings } from './job-worker.js';
import { RETRY_AFTER_MAX_MS, RetryLaterError, retryAfterMs } from './retry-after.js';

export interface WebhookWorkerOptions extends JobWorkerSettings {
  /** WEBHOOK_URL. */
  url: string;
  /** The signing secret, `whsec_<base64>`. */
  secret: string;
  /** WEBHOOK_TIMEOUT_MS: a POST without an answer after this long fails and is retried. */
  timeoutMs: number;
  /** Batches POSTed at once by this node; a receiver that hangs holds at most this many. @defaultValue 4 */
  concurrency?: number;
}

/**
 * The wait before the try after `attemptsMade` failed ones, ms: `baseMs` doubled on each retry
 * (as BullMQ's `exponential`), and never sooner than the receiver's Retry-After, which counts
 * up to an hour (RFC 9110 §10.2.3 with 503, RFC 6585 §4 with 429).
 */
export function webhookRetryDelay(attemptsMade: number, baseMs: number, retryAfter: number | undefined): number {
  const exponential = Math.round(2 ** Math.max(0, attemptsMade - 1) * baseMs);
  return Math.max(exponential, Math.min(retryAfter ?? 0, RETRY_AFTER_MAX_MS));
}

/** The `webhook-id` of a batch: the same on every try, so the receiver can dedupe (Standard Webhooks). */
export function webhookMessageId(jobId: string): string {
  return `msg_${jobId}`;
}

/**
 * POSTs each batch of the webhooks queue to WEBHOOK_URL, signed as the Standard
 * Webhooks spec says (`standardwebhooks`: `webhook-id`, `webhook-timestamp` and
 * `webhook-signature` = v1 HMAC-SHA256 of `id.timestamp.body`), signed anew on
 * each try so the timestamp is fresh. Anything but a 2xx in time fails the try;
 * BullMQ retries with exponential backoff (never sooner than the Retry-After of a
 * 429 or 503, up to an hour) up to WEBHOOK_MAX_ATTEMPTS, then keeps the job among
 * the failed ones (visible and retryable under /admin/jobs) and the events count
 * as failed. A slow receiver holds this worker's few slots and
 * nothing else: enqueue, delivery and acks never wait on it.
 */
export function createWebhookWorker(deps: {
  redis: RedisClient;
  keys: Keys;
  metrics: WebhookMetrics;
  logger: Logger;
  clock: Clock;
  options: WebhookWorkerOptions;
}): JobWorker {
  const { redis, keys, metrics, logger, clock, options } = deps;
  const signer = new Webhook(options.secret);
  // Shutdown cuts the POSTs under way (their batches are retried), so a hanging receiver cannot hold it up.
  const closing = new AbortController();
  const record = (fields: Record<string, string | number>, counts: Record<string, number> = {}) =>
    // Counters for the admin, best effort: a failed write loses a figure, never a webhook.
    Promise.all([
      ...(Object.keys(fields).length > 0 ? [redis.hset(keys.webhooks(), fields)] : []),
      ...Object.entries(counts).map(([field, n]) => redis.hincrby(keys.webhooks(), field, n)),
    ]).catch(() => undefined);

  async function post(job: Job<WebhookJobData>): Promise<{ status: number; events: number }> {
    const id = webhookMessageId(String(job.id));
    const body = JSON.stringify({ events: job.data.events });
    const at = new Date(clock.now());
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'postbox-webhooks',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signer.sign(id, at, body),
    };
    const started = performance.now();
    let status: number;
    let retryAfter: string | null;
    try {
      const res = await fetch(options.url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(options.timeoutMs), closing.signal]),
      });
      status = res.status;
      retryAfter = res.headers.get('retry-after');
      await res.body?.cancel().catch(() => undefined);
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      metrics.requests.inc({ result: timedOut ? 'timeout' : 'error' });
      const reason = timedOut ? `no answer within ${options.timeoutMs} ms` : `request failed: ${(err as Error).message}`;
      await record({ [WEBHOOK_FIELDS.lastFailureAt]: clock.now(), [WEBHOOK_FIELDS.lastFailure]: reason });
      throw new Error(`webhook ${id}: ${reason}`, { cause: err });
    } finally {
      metrics.requestSeconds.observe((performance.now() - started) / 1000);
    }
    metrics.requests.inc({ result: `${Math.floor(status / 100)}xx` });
    if (status < 200 || status > 299) {
      const reason = `the receiver answered ${status}`;
      await record({ [WEBHOOK_FIELDS.lastFailureAt]: clock.now(), [WEBHOOK_FIELDS.lastFailure]: reason });
      const wait = status === 429 || status === 503 ? retryAfterMs(retryAfter ?? undefined, clock.now()) : undefined;
      throw new RetryLaterError(`webhook ${id}: ${reason}`, wait);
    }
    const events = job.data.events.length;
    metrics.delivered.inc(events);
    await record({ [WEBHOOK_FIELDS.lastDeliveredAt]: clock.now() }, { [WEBHOOK_FIELDS.delivered]: events });
    return { status, events };
  }

  const link = workerConnection(options);
  const worker = new Worker<WebhookJobData>(QUEUE_NAMES.webhooks, post, {
    ...workerOptions(options, link.connection, options.concurrency ?? 4),
    settings: {
      // BullMQ calls this for the `webhook` backoff type of the batches (src/queue/job-queues.ts).
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error, job?: MinimalJob) => {
        const backoff = job?.opts.backoff;
        const baseMs = (typeof backoff === 'object' ? backoff.delay : backoff) ?? 1000;
        return webhookRetryDelay(attemptsMade, baseMs, err instanceof RetryLaterError ? err.retryAfterMs : undefined);
      },
    },
  });
  logBullErrors(worker, logger, clock, 'webhook worker');
  worker.on('failed', (job, err) => {
    if (job === undefined) return;
    const final = job.attemptsMade >= (job.opts.attempts ?? 1);
    logger.warn({ err, jobId: job.id, attempts: job.attemptsMade, final }, final ? 'webhook batch given up' : 'webhook batch will be retried');
    if (!final) return;
    metrics.failed.inc(job.data.events.length);
    void record({}, { [WEBHOOK_FIELDS.failed]: job.data.events.length });
  });
  return {
    worker,
    async close() {
      closing.abort(new Error('the node is shutting down'));
      await worker.close();
      link.release();
    },
  };
}
