import { Queue, type DefaultJobOptions } from 'bullmq';
import { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { createThrottledLog } from '../throttled-log.js';
import { bullConnection, type RedisConnectionSettings } from './redis.js';

/**
 * The BullMQ queues of postbox. Queue names may not contain `:`; the key
 * prefix (`{<KEY_PREFIX>}:bull`: one hash tag, so on a Redis Cluster each queue's keys share a
 * slot, as BullMQ requires) keeps them apart from the mailboxes.
 */
export const QUEUE_NAMES = {
  /** Delayed messages (`delayMs` / `deliverAt`) and the iterations of recurring schedules. */
  scheduled: 'scheduled',
  /** One job per room message, appending it to every member's mailbox. */
  fanout: 'fanout',
  /** The periodic sweep of expired messages. */
  housekeeping: 'housekeeping',
  /** Batches of webhook events, each POSTed to WEBHOOK_URL (src/workers/webhook-worker.ts). */
  webhooks: 'webhooks',
  /** Web Push: one delayed `check` per pushable message, then one `send` per subscription (src/workers/push-worker.ts). */
  push: 'push',
} as const;

/** A message to append to one user's mailbox when its job runs. */
export interface DeliverJobData {
  userId: string;
  event: string;
  /** The message's data, already serialised to one line of JSON. */
  data: string;
  /** The producer's idempotency key, if it gave one. */
  key?: string | undefined;
  /** Counted from the moment the message reaches the mailbox, ms. */
  ttlMs?: number | undefined;
  /** The Web Push option, as JSON. */
  push?: string | undefined;
}

/** A room message; `cursor`, `delivered` and `skipped` record progress so a retried job resumes. */
export interface FanoutJobData {
  room: string;
  event: string;
  data: string;
  exceptUserId?: string | undefined;
  /** Epoch ms after which the message must not be delivered; fixed at send time. */
  expiresAt?: number | undefined;
  /** The Web Push option of every member's copy, as JSON. */
  push?: string | undefined;
  /** Members when the message was sent, for the progress percentage. */
  members: number;
  /** The last member already done (members are walked in lexical order). */
  cursor?: string | undefined;
  delivered?: number | undefined;
  /** Members whose mailbox was full (429) and who did not get the message. */
  skipped?: number | undefined;
}

/** One webhook event, as the receiver gets it (inside `{"events": [...]}`). */
export interface WebhookEvent {
  /** `<userId>/<eventId>/<type>`: the same on every delivery of the event, so a receiver can dedupe. */
  id: string;
  type: string;
  /** When it happened, ISO 8601. */
  timestamp: string;
  data: {
    userId: string;
    /** The message's event id. */
    id: string;
    state: string;
    deliveries: number;
    attempts: number;
    enqueuedAt: string;
    firstDeliveredAt?: string;
    ackedAt?: string;
    deadAt?: string;
    expiredAt?: string;
    reason?: string;
  };
}

/** A batch of at most 100 events: one POST, whose `webhook-id` is `msg_<job id>` on every try. */
export interface WebhookJobData {
  events: WebhookEvent[];
}
/**
 * Web Push jobs. A `check` is added, delayed by PUSH_AFTER_MS, for each message with a `push`
 * option; when it runs it looks at the message (src/queue/lua/push-due.lua) and either ends
 * (acked), waits again (a stream holds it), or pushes to every subscription of the user, adding
 * a `send` job for each push to retry.
 */
export type PushJobData =
  | {
      kind: 'check';
      userId: string;
      id: string;
      /** Checks so far, this one not included; bounded (src/workers/push-worker.ts). */
      checks?: number | undefined;
      /** When the message was first seen in flight on an open stream, epoch ms: due one ack timeout later. */
      inflightSince?: number | undefined;
    }
  | {
      /** A retry: the check made the first attempt itself. */
      kind: 'send';
      userId: string;
      id: string;
      /** The subscription's id (src/queue/push-subscriptions.ts). */
      subscription: string;
      /** The attempt this job's first run is (2: the check made the first). */
      firstAttempt: number;
    };

/** Completed jobs kept per queue: enough for the admin to show recent work, bounded in memory. */
export const KEEP_COMPLETED = { count: 1000, age: 24 * 3600 };
/** Failed jobs kept per queue, for the admin to inspect and retry. */
export const KEEP_FAILED = { count: 5000, age: 7 * 24 * 3600 };
/** Approximate length of each queue's events stream (BullMQ's default is 10 000). */
export const EVENTS_MAX_LEN = 1000;

/**
 * A Redis outage (or, for a scheduled message, a full mailbox) fails a job; it is tried 10
 * times, 1, 2, … 256 s apart: about 8½ minutes. A fan-out resumes at its recorded cursor, so
 * its retries cost only the members left; members whose mailbox is full are skipped (counted
 * in the job's result and logged), not retried.
 */
const retriedJob: DefaultJobOptions = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: KEEP_COMPLETED,
  removeOnFail: KEEP_FAILED,
};

/**
 * Tries of a webhook batch, and the first retry's delay (doubled each time, or longer when the
 * receiver's Retry-After asks): WEBHOOK_MAX_ATTEMPTS, WEBHOOK_BACKOFF_MS.
 */
export interface WebhookRetry {
  attempts: number;
  backoffMs: number;
}

function defaultJobOptions(webhooks: WebhookRetry): Record<keyof typeof QUEUE_NAMES, DefaultJobOptions> {
  return {
    scheduled: retriedJob,
    fanout: retriedJob,
    // The next run comes on its own; a failed sweep is not worth retrying.
    housekeeping: { attempts: 1, removeOnComplete: { count: 20 }, removeOnFail: { count: 100 } },
    webhooks: {
      attempts: webhooks.attempts,
      // Doubling from `delay`, and never sooner than a receiver's Retry-After: the webhook
      // worker's strategy (src/workers/webhook-worker.ts `webhookRetryDelay`).
      backoff: { type: 'webhook', delay: webhooks.backoffMs },
      // A batch holds up to 100 events: keep fewer delivered ones than the other queues.
      removeOnComplete: { count: 100, age: 3600 },
      removeOnFail: KEEP_FAILED,
    },
    // A check fails only when Redis does; a send sets its own attempts and backoff (push-jobs.ts).
    push: { attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
  };
}

/**
 * BullMQ's key prefix for a postbox `KEY_PREFIX`: hash-tagged, because a
 * BullMQ script touches several keys of its queue, which a Redis Cluster
 * allows only within one slot (BullMQ's own advice for clusters).
 */
export function bullPrefix(keyPrefix: string): string {
  return `{${keyPrefix}}:bull`;
}

export interface JobQueues {
  scheduled: Queue<DeliverJobData>;
  fanout: Queue<FanoutJobData>;
  housekeeping: Queue;
  webhooks: Queue<WebhookJobData>;
  /** Web Push checks and sends; only when push is on. */
  push: Queue<PushJobData> | undefined;
  /** Every queue, for the admin (bull-board). */
  all: Queue[];
  close(): Promise<void>;
}

/** The producer side of the BullMQ queues, each on its own fail-fast connection. */
export async function createJobQueues(options: {
  redis: RedisConnectionSettings;
  keyPrefix: string;
  logger: Logger;
  clock: Clock;
  /** @defaultValue 10 tries from 1 s */
  webhooks?: WebhookRetry;
  /** Web Push is on (the `push` queue exists). @defaultValue false */
  push?: boolean;
}): Promise<JobQueues> {
  const { logger, clock } = options;
  const jobOptions = defaultJobOptions(options.webhooks ?? { attempts: 10, backoffMs: 1000 });
  const prefix = bullPrefix(options.keyPrefix);
  const connections: Array<{ disconnect(): void }> = [];
  const make = <T>(name: keyof typeof QUEUE_NAMES) => {
    const connection = bullConnection(options.redis, 'command');
    // On a cluster the connection is a client of ours (BullMQ does not close it); on one Redis, options.
    if (connection instanceof Cluster) connections.push(connection);
    const queue = new Queue<T>(QUEUE_NAMES[name], {
      prefix,
      connection,
      defaultJobOptions: jobOptions[name],
      streams: { events: { maxLen: EVENTS_MAX_LEN } },
    });
    logBullErrors(queue, logger, clock, `queue ${name}`);
    return queue;
  };
  const scheduled = make<DeliverJobData>('scheduled');
  const fanout = make<FanoutJobData>('fanout');
  const housekeeping = make<unknown>('housekeeping');
  const webhooks = make<WebhookJobData>('webhooks');
  const push = options.push ? make<PushJobData>('push') : undefined;
  const all = [scheduled, fanout, housekeeping, webhooks, ...(push ? [push] : [])] as Queue[];
  await Promise.all(all.map((q) => q.waitUntilReady()));
  return {
    scheduled,
    fanout,
    housekeeping,
    webhooks,
    push,
    all,
    async close() {
      // close() sends commands; with Redis away they fail fast, and the connection is dropped anyway.
      await Promise.allSettled(all.map((q) => q.close()));
      await Promise.allSettled(all.map((q) => q.disconnect()));
      for (const c of connections) c.disconnect();
    },
  };
}

/**
 * BullMQ objects emit 'error' on every failed reconnect; an unhandled 'error'
 * event would crash the process, and logging each one would flood the log.
 */
export function logBullErrors(
  emitter: { on(event: 'error', fn: (err: Error) => void): unknown },
  logger: Logger,
  clock: Clock,
  what: string,
): void {
  const log = createThrottledLog(logger.child({ what }), clock, { message: 'bullmq connection error' });
  emitter.on('error', (err: Error) => log.failed(err));
}

/**
 * Idempotency key of a job's append to one mailbox. It starts with a control
 * character, which producer keys may not contain, so it never collides with one.
 */
export function jobIdempotencyKey(queue: string, jobId: string): string {
  return `\u001fjob:${queue}:${jobId}`;
}
