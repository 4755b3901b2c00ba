import { DelayedError, UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { QUEUE_NAMES, logBullErrors, type PushJobData } from '../queue/job-queues.js';
import { enqueuedAtOf } from '../queue/keys.js';
import type { PushDueState, PushOption, ReadPushDue } from '../queue/push-due.js';
import { pushSendJobId } from '../queue/push-jobs.js';
import type { PushSubscriptions, StoredSubscription } from '../queue/push-subscriptions.js';
import { workerConnection, workerOptions, type JobWorker, type JobWorkerSettings } from './job-worker.js';
import type { PushMetrics } from './push-metrics.js';
import type { PushSender } from './push-sender.js';
import { RETRY_AFTER_MAX_MS, RetryLaterError } from './retry-after.js';

export interface PushWorkerOptions extends JobWorkerSettings {
  /** ACK_TIMEOUT_MS: a message in flight this long with no ack is pushed even while a stream is open. */
  ackTimeoutMs: number;
  /** PUSH_TTL_SECONDS: TTL of the push of a message without `ttlMs`. */
  ttlSeconds: number;
  /** Jobs processed at once (PUSH_CONCURRENCY). */
  concurrency: number;
  /** Attempts of one push to one subscription before it is given up. @defaultValue 10 */
  sendAttempts?: number;
  /** First retry delay of a send, doubled each time (Retry-After wins when longer), ms. @defaultValue 1000 */
  retryBaseMs?: number;
}

/** What a push carries (its plaintext, RFC 8291): read by the service-worker helper (src/client/postbox-sw.ts). */
export interface PushPayload {
  /** Marks a postbox push, versioned: a service worker may receive pushes of other senders too. */
  postbox: 1;
  /** The event id: the same id the stream would carry, and the one to ack. */
  id: string;
  event: string;
  title: string;
  body?: string;
  topic?: string;
  /** A credential that acks this one message (POST /v1/acks, Bearer), short-lived. */
  ack: string;
  /**
   * The message's data, when the whole payload still fits a push (PUSH_PLAINTEXT_MAX_BYTES): then
   * the service worker may ack the message and hand it to the page it opens. Without it, the
   * page's stream delivers (and acks) it.
   */
  data?: unknown;
}

/**
 * The largest plaintext of one push: a push service must take 4096 bytes of body (RFC 8030 §7.2),
 * and aes128gcm in one record adds 86 bytes of header, a padding delimiter and a 16-byte tag (RFC 8188).
 */
export const PUSH_PLAINTEXT_MAX_BYTES = 4096 - 86 - 1 - 16;

/** The payload's JSON: with the message's data (already JSON text) when it fits, else without. */
export function pushPayloadJson(payload: Omit<PushPayload, 'data'>, data: string): string {
  const bare = JSON.stringify(payload);
  if (data === '') return bare;
  const whole = `${bare.slice(0, -1)},"data":${data}}`;
  return Buffer.byteLength(whole) <= PUSH_PLAINTEXT_MAX_BYTES ? whole : bare;
}

/** A check of a message held by an open stream waits again; this many times at most (about 8 h at the default ack timeout). */
export const MAX_CHECKS = 1000;

/** What one attempt to one subscription came to. */
type Attempted =
  | { outcome: 'sent' | 'gone'; status: number }
  | { outcome: 'blocked' }
  | { outcome: 'rejected'; reason: string }
  | { outcome: 'retry'; reason: string; retryAfterMs: number | undefined; last: boolean };

/**
 * Processes the `push` queue (src/queue/push-jobs.ts). A `check` job runs PUSH_AFTER_MS after
 * its message was enqueued and decides, from one snapshot (push-due.lua):
 * - the message left the mailbox (acked over SSE or by a push's credential, expired, dead): done,
 *   nothing is sent;
 * - no node holds an open stream of the user: pushed to every subscription;
 * - a stream holds the user and the message is in flight: due one ack timeout after it was seen
 *   in flight; the job waits until then and, if no ack came, pushes;
 * - a stream holds the user and the message waits behind the in-flight window: checked again
 *   after an ack timeout (at most MAX_CHECKS times).
 * The check makes the first attempt itself (one job per message, not one per message and
 * subscription); a push to retry, on 429 (after its Retry-After), 5xx or a network error,
 * becomes a `send` job with exponential backoff, which looks again first (an ack meanwhile
 * cancels it). A 404 or 410 deletes the subscription. Nothing here runs on a request's path.
 */
export function createPushWorker(deps: {
  queue: Queue<PushJobData>;
  readDue: ReadPushDue;
  subscriptions: PushSubscriptions;
  sender: PushSender;
  /** Signs the ack credential of one message (src/http/push-credentials.ts, injected). */
  ackCredential: (userId: string, id: string) => Promise<string>;
  metrics: PushMetrics;
  logger: Logger;
  clock: Clock;
  options: PushWorkerOptions;
}): JobWorker {
  const { queue, readDue, subscriptions, sender, ackCredential, metrics, logger, clock, options } = deps;
  const attempts = options.sendAttempts ?? 10;
  const retryBaseMs = options.retryBaseMs ?? 1000;

  /** Before attempt `n + 1`: doubling from retryBaseMs with ±20 % jitter, never sooner than a Retry-After (RFC 8030 §8.4). */
  function retryDelay(n: number, retryAfter: number | undefined): number {
    const exponential = retryBaseMs * 2 ** Math.max(0, n - 1) * (0.8 + Math.random() * 0.4);
    // Never longer than a Retry-After may ask, whatever the doubling reached.
    return Math.min(RETRY_AFTER_MAX_MS, Math.max(exponential, retryAfter ?? 0));
  }

  async function waitUntil(job: Job<PushJobData>, token: string | undefined, at: number, data: PushJobData): Promise<never> {
    await job.updateData(data);
    await job.moveToDelayed(at, token);
    throw new DelayedError();
  }

  function expired(due: PushDueState, now: number): boolean {
    return due.state !== 'gone' && due.expiresAt !== undefined && due.expiresAt <= now;
  }

  /** One push of the message to one subscription: attempt `n` of `attempts`. */
  async function attempt(
    userId: string,
    id: string,
    due: Extract<PushDueState, { state: 'waiting' | 'inflight' }> & { push: PushOption },
    subscription: StoredSubscription,
    ack: string,
    n: number,
  ): Promise<Attempted> {
    const now = clock.now();
    const ttlSeconds = due.expiresAt === undefined ? options.ttlSeconds : Math.ceil((due.expiresAt - now) / 1000);
    const { title, body, urgency, topic } = due.push;
    const payload: Omit<PushPayload, 'data'> = {
      postbox: 1,
      id,
      event: due.event,
      title,
      ...(body === undefined ? {} : { body }),
      ...(topic === undefined ? {} : { topic }),
      ack,
    };
    const started = performance.now();
    const outcome = await sender.send(subscription, pushPayloadJson(payload, due.data), { ttlSeconds, urgency, topic });
    metrics.request.observe((performance.now() - started) / 1000);
    const log = { userId, id, subscription: subscription.id, attempt: n };
    switch (outcome.outcome) {
      case 'sent':
        metrics.sent.inc();
        metrics.latency.observe(Math.max(0, clock.now() - enqueuedAtOf(id)) / 1000);
        return { outcome: 'sent', status: outcome.status };
      case 'gone':
        await subscriptions.removeId(userId, subscription.id);
        metrics.gone.inc();
        logger.info({ ...log, status: outcome.status }, 'push subscription gone: deleted');
        return { outcome: 'gone', status: outcome.status };
      case 'blocked':
        await subscriptions.removeId(userId, subscription.id);
        metrics.failed.inc({ reason: 'blocked' });
        logger.warn({ ...log, reason: outcome.reason }, 'push endpoint refused: subscription deleted');
        return { outcome: 'blocked' };
      case 'rejected':
        metrics.failed.inc({ reason: 'rejected' });
        logger.warn({ ...log, status: outcome.status, reason: outcome.reason }, 'push rejected by the push service');
        return { outcome: 'rejected', reason: outcome.reason };
      case 'retry': {
        const last = n >= attempts;
        if (last) {
          metrics.failed.inc({ reason: 'exhausted' });
          logger.warn({ ...log, reason: outcome.reason }, 'push given up after its last attempt');
        } else {
          logger.debug({ ...log, reason: outcome.reason, retryAfterMs: outcome.retryAfterMs }, 'push to be retried');
        }
        return { outcome: 'retry', reason: outcome.reason, retryAfterMs: outcome.retryAfterMs, last };
      }
    }
  }

  async function check(job: Job<PushJobData>, token: string | undefined, data: Extract<PushJobData, { kind: 'check' }>) {
    const { userId, id } = data;
    const due = await readDue(userId, id, '*');
    const now = clock.now();
    if (due.state === 'gone') return { result: 'gone' };
    if (expired(due, now)) return { result: 'expired' };
    if (due.push === undefined) return { result: 'no-push' };
    if (due.holders > 0) {
      const checks = (data.checks ?? 0) + 1;
      if (checks > MAX_CHECKS) return { result: 'given-up' };
      if (due.state === 'waiting') return waitUntil(job, token, now + options.ackTimeoutMs, { ...data, checks });
      const since = data.inflightSince ?? now - due.idleMs;
      if (now - since < options.ackTimeoutMs) {
        return waitUntil(job, token, since + options.ackTimeoutMs, { ...data, checks, inflightSince: since });
      }
    }
    if (due.subscriptions.length === 0) return { result: 'no-subscriptions' };
    const ack = await ackCredential(userId, id);
    const pushable = { ...due, push: due.push };
    const done = await Promise.all(due.subscriptions.map((s) => attempt(userId, id, pushable, s, ack, 1)));
    const retries = due.subscriptions.flatMap((s, i) => {
      const d = done[i];
      return d?.outcome === 'retry' && !d.last ? [{ subscription: s.id, delay: retryDelay(1, d.retryAfterMs) }] : [];
    });
    if (retries.length > 0) {
      await queue.addBulk(
        retries.map(({ subscription, delay }) => ({
          name: 'send',
          data: { kind: 'send' as const, userId, id, subscription, firstAttempt: 2 },
          opts: { jobId: pushSendJobId(userId, id, subscription), attempts: attempts - 1, backoff: { type: 'push' }, delay },
        })),
      );
    }
    const count = (outcome: Attempted['outcome']) => done.filter((d) => d.outcome === outcome).length;
    return {
      result: 'pushed',
      subscriptions: due.subscriptions.length,
      sent: count('sent'),
      gone: count('gone'),
      blocked: count('blocked'),
      rejected: count('rejected'),
      retrying: retries.length,
    };
  }

  async function send(job: Job<PushJobData>, data: Extract<PushJobData, { kind: 'send' }>) {
    const { userId, id, subscription } = data;
    const due = await readDue(userId, id, subscription);
    if (due.state === 'gone') return { result: 'gone' };
    if (expired(due, clock.now()) || due.push === undefined) return { result: 'expired' };
    const stored = due.subscriptions[0];
    if (stored === undefined) return { result: 'unsubscribed' };
    const done = await attempt(userId, id, { ...due, push: due.push }, stored, await ackCredential(userId, id), data.firstAttempt + job.attemptsMade);
    switch (done.outcome) {
      case 'sent':
        return { result: 'sent', status: done.status };
      case 'gone':
        return { result: 'subscription-gone', status: done.status };
      case 'blocked':
        return { result: 'blocked' };
      case 'rejected':
        throw new UnrecoverableError(done.reason);
      case 'retry':
        throw new RetryLaterError(done.reason, done.retryAfterMs);
    }
  }

  const link = workerConnection(options);
  const worker = new Worker<PushJobData>(
    QUEUE_NAMES.push,
    (job, token) => (job.data.kind === 'check' ? check(job, token, job.data) : send(job, job.data)),
    {
      ...workerOptions(options, link.connection, options.concurrency),
      settings: {
        // BullMQ calls this for the `push` backoff type of send jobs, after their attempt
        // `firstAttempt + attemptsMade - 1` failed.
        backoffStrategy: (attemptsMade: number, _type?: string, err?: Error, job?: { data: unknown }) => {
          const first = (job?.data as { firstAttempt?: number } | undefined)?.firstAttempt ?? 1;
          return retryDelay(first + attemptsMade - 1, err instanceof RetryLaterError ? err.retryAfterMs : undefined);
        },
      },
    },
  );
  logBullErrors(worker, logger, clock, 'push worker');
  return {
    worker,
    close: async () => {
      await worker.close();
      sender.close();
      link.release();
    },
  };
}
