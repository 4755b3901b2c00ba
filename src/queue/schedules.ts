import { createHash, randomUUID } from 'node:crypto';
import { CronExpressionParser } from 'cron-parser';
import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';
import type { RedisClient } from './redis.js';
import { QUEUE_NAMES, jobIdempotencyKey, type DeliverJobData, type JobQueues } from './job-queues.js';
import type { Keys } from './keys.js';

/** `deliverAt` may be at most this far ahead: one year, ms. */
export const MAX_SCHEDULE_AHEAD_MS = 365 * 86_400_000;
/** Smallest `every` of a recurring schedule, ms. */
export const MIN_EVERY_MS = 100;
/** Ids of scheduled messages, as the cancel route accepts them. */
export const SCHEDULED_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** BullMQ job names in the `scheduled` queue. */
export const JOB_SCHEDULED = 'scheduled';
export const JOB_RECURRING = 'recurring';

export interface ScheduledMessage {
  scheduledId: string;
  userId: string;
  /** Epoch ms. */
  deliverAt: number;
}

export interface RecurringSpec {
  /** Period, ms (exclusive with `cron`). */
  every?: number | undefined;
  /** Cron pattern, 5 fields or 6 with seconds first (exclusive with `every`). */
  cron?: string | undefined;
  /** IANA time zone of `cron`. @defaultValue the server's */
  tz?: string | undefined;
  event: string;
  /** JSON text of the data sent each time. */
  data: string;
  ttlMs?: number | undefined;
  /** Epoch ms after which nothing more is sent: the schedule then lapses. @defaultValue none: forever */
  until?: number | undefined;
}

export interface RecurringView {
  name: string;
  every?: number;
  cron?: string;
  tz?: string;
  event: string;
  data: unknown;
  ttlMs?: number;
  /** ISO time after which nothing more is sent. */
  until?: string;
  /** When the next message is due, ISO time; null when none is planned (e.g. past `until`). */
  next: string | null;
}

/** Where a scheduled message is (the status API): still held, in the mailbox under an event id, or given up. */
export type ScheduledLookup =
  | { state: 'scheduled'; scheduledAt: number; deliverAt: number }
  | { state: 'enqueued'; eventId: string }
  | { state: 'failed'; scheduledAt: number; failedAt: number };

/** Scheduled (one-off, delayed) and recurring messages, held as BullMQ jobs until due. */
export interface Schedules {
  /**
   * A scheduled message of this user by its id; undefined when unknown. Once due, its job's
   * result names its event id; after the completed job is trimmed, the append's idempotency
   * record still does (DEDUP_WINDOW_MS) unless the producer gave its own key.
   */
  find(userId: string, scheduledId: string): Promise<ScheduledLookup | undefined>;
  /** Holds each message as a delayed job until its `deliverAt`. */
  scheduleMany(items: Array<{ message: DeliverJobData; deliverAt: number }>): Promise<ScheduledMessage[]>;
  /** Cancels a pending scheduled message of this user; false when there is none with this id. */
  cancel(userId: string, scheduledId: string): Promise<boolean>;
  upsertRecurring(userId: string, name: string, spec: RecurringSpec): Promise<{ created: boolean; view: RecurringView }>;
  listRecurring(userId: string): Promise<RecurringView[]>;
  removeRecurring(userId: string, name: string): Promise<boolean>;
}

/** Names of a cron pattern's fields: 5 of them, or 6 with seconds first. */
const CRON_FIELDS = {
  5: ['minute', 'hour', 'day-of-month', 'month', 'day-of-week'],
  6: ['second', 'minute', 'hour', 'day-of-month', 'month', 'day-of-week'],
} as const;

function cronError(cron: string, tz: string | undefined): string | undefined {
  try {
    CronExpressionParser.parse(cron, tz === undefined ? {} : { tz }).next();
    return undefined;
  } catch (err) {
    // "Validation error, cannot resolve alias ..." reads better without its category.
    return (err instanceof Error ? err.message : String(err)).replace(/^(Validation|Constraint) error, /, '');
  }
}

/**
 * Throws PB_ERR_VALIDATION unless `cron` parses and fires at least once, with
 * the same parser BullMQ uses, so a schedule never fails inside BullMQ. The
 * message names the field that is wrong (cron-parser alone says only
 * `cannot resolve alias "bog"`): each field is tried with `*` in the others.
 */
export function validateCron(cron: string, tz: string | undefined): void {
  const reason = cronError(cron, tz);
  if (reason === undefined) return;
  const zone = tz === undefined ? undefined : cronError('* * * * *', tz);
  if (zone !== undefined) {
    const message = `cron: the time zone tz "${tz}" is wrong: ${zone}`;
    throw new AppError('PB_ERR_VALIDATION', message, { details: [{ path: 'tz', message }] });
  }
  const fields = cron.trim().split(/\s+/);
  const names = fields.length === 5 || fields.length === 6 ? CRON_FIELDS[fields.length] : undefined;
  let message = `cron "${cron}": ${reason}`;
  let field: string | undefined;
  if (names === undefined && !cron.trim().startsWith('@')) {
    message += ` (a pattern has 5 fields, ${CRON_FIELDS[5].join(' ')}, or 6 with second first; this one has ${fields.length})`;
  }
  for (const [i, name] of (names ?? []).entries()) {
    const alone = fields.map((f, j) => (j === i ? f : '*')).join(' ');
    const wrong = cronError(alone, tz);
    if (wrong !== undefined) {
      field = name;
      message = `cron: the ${name} field "${fields[i]}" is wrong: ${wrong} (fields: ${names?.join(' ')})`;
      break;
    }
  }
  throw new AppError('PB_ERR_VALIDATION', message, { details: [{ path: 'cron', message, ...(field ? { field } : {}) }] });
}

/**
 * BullMQ builds iteration job ids as `repeat:<schedulerId>:<ms>` and rejects
 * ids with more colons; user ids and names may hold `:` but never `%` or `/`,
 * so this encoding is reversible and keeps users apart.
 */
function schedulerId(userId: string, name: string): string {
  return `${userId}/${name}`.replaceAll(':', '%3A');
}

export function createSchedules(deps: { queues: JobQueues; redis: RedisClient; keys: Keys; clock: Clock }): Schedules {
  const { redis, keys, clock } = deps;
  const queue = deps.queues.scheduled;

  /** The same producer key gives the same job, so a retried request schedules once. */
  function jobIdFor(m: DeliverJobData): string {
    if (m.key === undefined) return `s-${randomUUID()}`;
    return `k-${createHash('sha256').update(`${m.userId}\n${m.key}`).digest('base64url').slice(0, 32)}`;
  }

  function view(name: string, json: Awaited<ReturnType<typeof queue.getJobScheduler>>): RecurringView | undefined {
    const data = json?.template?.data;
    if (json === undefined || data === undefined) return undefined;
    const until = json.endDate;
    // Past `until` BullMQ plans no further job but keeps the scheduler, with the last time it ran.
    const ended = until !== undefined && until < clock.now();
    return {
      name,
      ...(json.every !== undefined && json.every !== null ? { every: Number(json.every) } : {}),
      ...(json.pattern ? { cron: json.pattern } : {}),
      ...(json.tz ? { tz: json.tz } : {}),
      event: data.event,
      data: JSON.parse(data.data) as unknown,
      ...(data.ttlMs !== undefined ? { ttlMs: data.ttlMs } : {}),
      ...(until !== undefined ? { until: new Date(until).toISOString() } : {}),
      next: json.next && !ended ? new Date(Number(json.next)).toISOString() : null,
    };
  }

  return {
    async scheduleMany(items) {
      if (items.length === 0) return [];
      const now = clock.now();
      const jobs = await queue.addBulk(
        items.map(({ message, deliverAt }) => ({
          name: JOB_SCHEDULED,
          data: message,
          opts: { jobId: jobIdFor(message), delay: Math.max(0, deliverAt - now) },
        })),
      );
      return Promise.all(
        jobs.map(async (job, i) => {
          const item = items[i];
          if (item === undefined || job.id === undefined) throw new Error('addBulk returned fewer jobs');
          let deliverAt = item.deliverAt;
          if (item.message.key !== undefined) {
            // An earlier request with this key may have scheduled it already: report that one's time.
            const existing = await queue.getJob(job.id);
            if (existing !== undefined) deliverAt = existing.timestamp + (existing.opts.delay ?? 0);
          }
          return { scheduledId: job.id, userId: item.message.userId, deliverAt };
        }),
      );
    },

    async find(userId, scheduledId) {
      const job = await queue.getJob(scheduledId);
      if (job !== undefined) {
        if (job.name !== JOB_SCHEDULED || job.data.userId !== userId) return undefined;
        const state = await job.getState();
        if (state === 'completed') {
          const eventId = (job.returnvalue as { id?: unknown } | null)?.id;
          return typeof eventId === 'string' ? { state: 'enqueued', eventId } : undefined;
        }
        if (state === 'failed') return { state: 'failed', scheduledAt: job.timestamp, failedAt: job.finishedOn ?? job.timestamp };
        return { state: 'scheduled', scheduledAt: job.timestamp, deliverAt: job.timestamp + (job.opts.delay ?? 0) };
      }
      const eventId = await redis.get(keys.idempotency(userId, jobIdempotencyKey(QUEUE_NAMES.scheduled, scheduledId)));
      return eventId === null ? undefined : { state: 'enqueued', eventId };
    },

    async cancel(userId, scheduledId) {
      const job = await queue.getJob(scheduledId);
      if (job === undefined || job.name !== JOB_SCHEDULED || job.data.userId !== userId) return false;
      const state = await job.getState();
      if (state !== 'delayed' && state !== 'waiting' && state !== 'prioritized') return false;
      try {
        await job.remove();
        return true;
      } catch (err) {
        // A worker took it between getState and remove: it is being delivered now.
        if (err instanceof Error && /locked/i.test(err.message)) return false;
        throw err;
      }
    },

    async upsertRecurring(userId, name, spec) {
      if (spec.cron !== undefined) validateCron(spec.cron, spec.tz);
      const id = schedulerId(userId, name);
      // Index first: a crash in between leaves an index entry without a scheduler, which
      // listing skips, rather than a scheduler nobody can list.
      const created = (await redis.hset(keys.schedules(userId), name, id)) === 1;
      const data: DeliverJobData = { userId, event: spec.event, data: spec.data, ttlMs: spec.ttlMs };
      const until = spec.until === undefined ? {} : { endDate: spec.until };
      await queue.upsertJobScheduler(
        id,
        spec.cron !== undefined
          ? { pattern: spec.cron, ...(spec.tz ? { tz: spec.tz } : {}), ...until }
          : { every: spec.every, ...until },
        // Each iteration's outcome is the message in the mailbox; kept as completed jobs too, a 1 s
        // schedule alone would fill the queue's completed list (KEEP_COMPLETED) in minutes.
        { name: JOB_RECURRING, data, opts: { removeOnComplete: true } },
      );
      const result = view(name, await queue.getJobScheduler(id));
      if (result === undefined && spec.until !== undefined && spec.until <= clock.now()) {
        // BullMQ stores no scheduler whose end has passed (it passed during this call).
        await redis.hdel(keys.schedules(userId), name);
        throw new AppError('PB_ERR_VALIDATION', 'until: that time has passed', {
          details: [{ path: 'until', message: 'in the past' }],
        });
      }
      if (result === undefined) throw new Error(`job scheduler ${id} vanished right after its upsert`);
      return { created, view: result };
    },

    async listRecurring(userId) {
      const names = Object.keys(await redis.hgetall(keys.schedules(userId))).sort();
      const views = await Promise.all(
        names.map(async (name) => view(name, await queue.getJobScheduler(schedulerId(userId, name)))),
      );
      return views.filter((v): v is RecurringView => v !== undefined);
    },

    async removeRecurring(userId, name) {
      const removed = await queue.removeJobScheduler(schedulerId(userId, name));
      const unindexed = await redis.hdel(keys.schedules(userId), name);
      return removed || unindexed === 1;
    },
  };
}
