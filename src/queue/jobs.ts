import { Queue, type DefaultJobOptions, type RedisOptions, type WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/**
 * The BullMQ queues of postbox. Queue names may not contain `:`; the key
 * prefix (`<KEY_PREFIX>:bull`) keeps them apart from the mailboxes.
 */
export const QUEUE_NAMES = {
  /** Delayed messages (`delayMs` / `deliverAt`) and the iterations of recurring schedules. */
  scheduled: 'scheduled',
  /** One job per room message, appending it to every member's mailbox. */
  fanout: 'fanout',
  /** The periodic sweep of expired messages. */
  housekeeping: 'housekeeping',
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
}

/** A room message; `cursor`, `delivered` and `skipped` record progress so a retried job resumes. */
export interface FanoutJobData {
  room: string;
  event: string;
  data: string;
  exceptUserId?: string | undefined;
  /** Epoch ms after which the message must not be delivered; fixed at send time. */
  expiresAt?: number | undefined;
  /** Members when the message was sent, for the progress percentage. */
  members: number;
  /** The last member already done (members are walked in lexical order). */
  cursor?: string | undefined;
  delivered?: number | undefined;
  /** Members whose mailbox was full (429) and who did not get the message. */
  skipped?: number | undefined;
}

/** Completed jobs kept per queue: enough for the admin to show recent work, bounded in memory. */
export const KEEP_COMPLETED = { count: 1000, age: 24 * 3600 };
/** Failed jobs kept per queue, for the admin to inspect and retry. */
export const KEEP_FAILED = { count: 5000, age: 7 * 24 * 3600 };
/** Approximate length of each queue's events stream (BullMQ's default is 10 000). */
export const EVENTS_MAX_LEN = 1000;

/**
 * A full mailbox or a Redis outage fails an append; retry for about 17 minutes
 * (1 + 2 + … + 512 s). A fan-out resumes at its recorded cursor, so its
 * retries cost only the members left.
 */
const retriedJob: DefaultJobOptions = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: KEEP_COMPLETED,
  removeOnFail: KEEP_FAILED,
};

const defaultJobOptions: Record<keyof typeof QUEUE_NAMES, DefaultJobOptions> = {
  scheduled: retriedJob,
  fanout: retriedJob,
  // The next run comes on its own; a failed sweep is not worth retrying.
  housekeeping: { attempts: 1, removeOnComplete: { count: 20 }, removeOnFail: { count: 100 } },
};

/** BullMQ's key prefix for a postbox `KEY_PREFIX`. */
export function bullPrefix(keyPrefix: string): string {
  return `${keyPrefix}:bull`;
}

/**
 * Connection options for BullMQ. `redisUrl` may be a unix socket path (the
 * embedded Redis): BullMQ hands `url` to ioredis, which takes a path there.
 * - `producer` (Queue, used on the request path): no offline queue and no
 *   retries, so while Redis is away a route fails at once with 503.
 * - `worker`: commands wait for the reconnect (`maxRetriesPerRequest: null`,
 *   as BullMQ requires for its blocking connection).
 */
export function bullConnection(redisUrl: string, role: 'producer' | 'worker'): RedisOptions {
  const common = { url: redisUrl, connectTimeout: 2000, retryStrategy: (times: number) => Math.min(50 * times, 1000) };
  return role === 'producer'
    ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 5000 }
    : { ...common, maxRetriesPerRequest: null };
}

/**
 * Options every postbox Worker shares. A job whose node dies keeps its lock
 * for `lockMs`; the stalled check (run as often) then hands it to another
 * worker. Retried jobs are idempotent, so several stalls are allowed.
 */
export function workerOptions(options: {
  redisUrl: string;
  keyPrefix: string;
  /** Lock duration and stalled-check period, ms (JOB_LOCK_MS). */
  lockMs: number;
  /** Jobs run at once by this worker. @defaultValue 1 */
  concurrency?: number;
}): WorkerOptions {
  return {
    prefix: bullPrefix(options.keyPrefix),
    connection: bullConnection(options.redisUrl, 'worker'),
    concurrency: options.concurrency ?? 1,
    lockDuration: options.lockMs,
    stalledInterval: options.lockMs,
    maxStalledCount: 10,
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}

export interface JobQueues {
  scheduled: Queue<DeliverJobData>;
  fanout: Queue<FanoutJobData>;
  housekeeping: Queue;
  /** Every queue, for the admin (bull-board). */
  all: Queue[];
  close(): Promise<void>;
}

/** The producer side of the BullMQ queues, each on its own fail-fast connection. */
export async function createJobQueues(options: {
  redisUrl: string;
  keyPrefix: string;
  logger: Logger;
}): Promise<JobQueues> {
  const { redisUrl, logger } = options;
  const prefix = bullPrefix(options.keyPrefix);
  const make = <T>(name: keyof typeof QUEUE_NAMES) => {
    const queue = new Queue<T>(QUEUE_NAMES[name], {
      prefix,
      connection: bullConnection(redisUrl, 'producer'),
      defaultJobOptions: defaultJobOptions[name],
      streams: { events: { maxLen: EVENTS_MAX_LEN } },
    });
    logErrorsOnce(queue, logger, `queue ${name}`);
    return queue;
  };
  const scheduled = make<DeliverJobData>('scheduled');
  const fanout = make<FanoutJobData>('fanout');
  const housekeeping = make<unknown>('housekeeping');
  const all = [scheduled, fanout, housekeeping] as Queue[];
  await Promise.all(all.map((q) => q.waitUntilReady()));
  return {
    scheduled,
    fanout,
    housekeeping,
    all,
    async close() {
      // close() sends commands; with Redis away they fail fast, and the connection is dropped anyway.
      await Promise.allSettled(all.map((q) => q.close()));
      await Promise.allSettled(all.map((q) => q.disconnect()));
    },
  };
}

/**
 * BullMQ objects emit 'error' on every failed reconnect; an unhandled 'error'
 * event would crash the process, and logging each one would flood the log.
 */
export function logErrorsOnce(
  emitter: { on(event: 'error', fn: (err: Error) => void): unknown },
  logger: Logger,
  what: string,
): void {
  let last = '';
  emitter.on('error', (err: Error) => {
    if (err.message !== last) logger.warn({ err, what }, 'bullmq connection error');
    last = err.message;
  });
}

/**
 * BullMQ loses jobs if Redis evicts keys under memory pressure; the mailboxes
 * too. Warns at start-up when `maxmemory-policy` is not `noeviction`.
 */
export async function warnOnEviction(redis: Redis, logger: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    if (policy !== undefined && policy !== 'noeviction') {
      logger.warn(
        { policy },
        'Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queued messages ' +
          'and jobs; set maxmemory-policy noeviction',
      );
    }
  } catch (err) {
    // Managed Redis services often disable CONFIG; nothing to check then.
    logger.debug({ err }, 'could not read maxmemory-policy');
  }
}

/**
 * Idempotency key of a job's append to one mailbox. It starts with a control
 * character, which producer keys may not contain, so it never collides with one.
 */
export function jobIdempotencyKey(queue: string, jobId: string): string {
  return `\u001fjob:${queue}:${jobId}`;
}
