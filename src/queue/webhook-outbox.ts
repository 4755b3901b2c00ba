import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { createThrottledLog } from '../throttled-log.js';
import type { WebhookEvent, WebhookJobData } from './job-queues.js';
import { EVENT_ID_PATTERN, type Keys } from './keys.js';
import { eventTypeOf, readReceipt } from './receipts.js';
import type { RedisClient } from './redis.js';
import { withScripts, type OutboxTakeReply } from './scripts.js';
import { settle } from './settle.js';
import { WEBHOOK_FIELDS } from './webhook-stats.js';

/*
 * The webhook outbox. ack.lua, pop.lua and expire.lua append the events of their outcomes to
 * the user's own outbox stream (`pb:{u}:wh`): in the user's slot, so the write is part of the
 * script that acks, expires or dead-letters, and legal on a Redis Cluster (a global outbox
 * would be one slot, which a script of another slot cannot touch). The node that ran the script
 * knows the user may have events and tells this outbox (`touched`); it moves them into BullMQ
 * jobs of up to 100 events, at most a second after the first one, then deletes them. If the node
 * stops in between, the entries stay: the housekeeping sweep finds them (expire.lua reports the
 * outbox length of every user it looks at) and the node running it moves them.
 *
 * Bounded: each outbox keeps at most ~10,000 entries (XADD MAXLEN) and expires a day after its
 * last write; a flush reads a bounded number of users and events; and when the webhooks queue
 * holds WEBHOOK_MAX_BACKLOG batches (the receiver is down or slow for long), new events are
 * dropped and counted instead of queued. Nothing here waits on the receiver.
 */

export interface WebhookOutboxOptions {
  nodeId: string;
  /** Webhooks are on: when off, entries found (left from when they were on) are dropped and counted. */
  enabled: boolean;
  /** WEBHOOK_MAX_BACKLOG: batches waiting in the webhooks queue beyond which new events are dropped. */
  maxBacklog: number;
  /** Events per batch, i.e. per POST. @defaultValue 100 */
  batchSize?: number;
  /** Longest an event waits for its batch to fill, ms. @defaultValue 1000 */
  maxWaitMs?: number;
  /** How long a node's take of one outbox keeps others off it, ms. @defaultValue 30000 */
  lockMs?: number;
}

export interface WebhookOutbox {
  /** A script may have added about `events` events to the user's outbox. */
  touched(userId: string, events?: number): void;
  /** Moves what is waiting now into jobs (tests, shutdown); resolves when done or when Redis failed. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Outboxes read per flush, and entries and events per outbox: a flush holds at most ~50,000 events. */
const USERS_PER_FLUSH = 100;
const ENTRIES_PER_TAKE = 50;
const EVENTS_PER_TAKE = 500;
/** How long a count of the queue's backlog is trusted, ms. */
const BACKLOG_TTL_MS = 1000;

/**
 * The events of one outbox entry: `items` is `<event id>=<receipt>` per message, space-separated,
 * each receipt as the scripts write them (src/queue/receipts.ts).
 */
export function eventsOf(userId: string, letter: string, items: string): WebhookEvent[] {
  const type = eventTypeOf(letter);
  if (type === undefined) return [];
  return items.split(' ').flatMap((item) => {
    const [id = '', receipt = ''] = item.split('=');
    const read = EVENT_ID_PATTERN.test(id) && receipt.startsWith(`${letter}:`) ? readReceipt(id, receipt) : undefined;
    if (read === undefined) return [];
    const data: WebhookEvent['data'] = { userId, ...read.status };
    const when = new Date(read.at).toISOString();
    return [{ id: `${userId}/${id}/${type}`, type, timestamp: letter === 'f' ? (data.firstDeliveredAt ?? when) : when, data }];
  });
}

/** The job id of a batch: the same events give the same id, so BullMQ stores one job for a batch made twice. */
export function batchJobId(events: readonly WebhookEvent[]): string {
  const hash = createHash('sha256');
  for (const e of events) hash.update(`${e.id}\n`);
  return `b-${hash.digest('base64url').slice(0, 32)}`;
}

export function createWebhookOutbox(deps: {
  redis: RedisClient;
  keys: Keys;
  queue: Queue<WebhookJobData>;
  clock: Clock;
  logger: Logger;
  options: WebhookOutboxOptions;
  /** Events put into jobs. */
  onQueued?: (events: number) => void;
  /** Events dropped: `backlog` (the queue is full) or `disabled` (webhooks are off). */
  onDropped?: (events: number, reason: 'backlog' | 'disabled') => void;
}): WebhookOutbox {
  const { keys, queue, clock, options } = deps;
  const redis = withScripts(deps.redis);
  const batchSize = options.batchSize ?? 100;
  const maxWaitMs = options.maxWaitMs ?? 1000;
  const lockMs = options.lockMs ?? 30_000;
  const failures = createThrottledLog(deps.logger, clock, { message: 'webhook outbox flush failed; retrying' });
  const pending = new Map<string, number>();
  let pendingEvents = 0;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let closed = false;
  let backlog = { count: 0, at: -Infinity };

  function schedule(delayMs: number): void {
    if (closed || running !== undefined) return;
    if (delayMs === 0) {
      clock.clearTimeout(timer);
      timer = undefined;
      void run();
    } else {
      timer ??= clock.setTimeout(() => {
        timer = undefined;
        void run();
      }, delayMs);
    }
  }

  function run(): Promise<void> {
    running ??= flushOnce()
      .catch((err: unknown) => failures.failed(err))
      .finally(() => {
        running = undefined;
        if (pendingEvents >= batchSize) schedule(0);
        else if (pending.size > 0) schedule(maxWaitMs);
      });
    return running;
  }

  async function queuedBatches(): Promise<number> {
    const now = clock.now();
    if (now - backlog.at < BACKLOG_TTL_MS) return backlog.count;
    const counts = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    backlog = { count: Object.values(counts).reduce((a, b) => a + b, 0), at: now };
    return backlog.count;
  }

  function putBack(users: string[]): void {
    for (const u of users) touched(u, 0);
  }

  async function flushOnce(): Promise<void> {
    const users = [...pending.keys()].slice(0, USERS_PER_FLUSH);
    for (const u of users) {
      pendingEvents -= pending.get(u) ?? 0;
      pending.delete(u);
    }
    if (users.length === 0) return;
    const replies = await settle(
      users.map((u) => redis.pbOutboxTake(keys.outbox(u), keys.outboxLock(u), options.nodeId, lockMs, ENTRIES_PER_TAKE, EVENTS_PER_TAKE)),
    );
    const taken: Array<{ userId: string; entryIds: string[] }> = [];
    const events: WebhookEvent[] = [];
    const failed: string[] = [];
    users.forEach((userId, i) => {
      const reply = replies[i] as OutboxTakeReply | Error;
      if (reply instanceof Error) return void failed.push(userId);
      const [status, ...entries] = reply;
      if (status !== 1) return; // empty, or another node is taking them (and looks again when done)
      taken.push({ userId, entryIds: entries.map(([entryId]) => entryId) });
      for (const [, letter, items] of entries) events.push(...eventsOf(userId, letter, items));
    });
    if (failed.length > 0) {
      putBack(failed);
      failures.failed(replies.find((r) => r instanceof Error));
    }
    if (taken.length === 0) return;

    const batches: WebhookEvent[][] = [];
    for (let i = 0; i < events.length; i += batchSize) batches.push(events.slice(i, i + batchSize));
    let room = 0;
    if (options.enabled && batches.length > 0) {
      try {
        room = Math.max(0, options.maxBacklog - (await queuedBatches()));
      } catch (err) {
        putBack(taken.map((t) => t.userId));
        throw err;
      }
    }
    const kept = batches.slice(0, room);
    const dropped = batches.slice(room).reduce((n, b) => n + b.length, 0);
    if (kept.length > 0) {
      try {
        await queue.addBulk(kept.map((b) => ({ name: 'batch', data: { events: b }, opts: { jobId: batchJobId(b) } })));
      } catch (err) {
        // The entries stay in the outboxes (and the lock is ours): the next flush makes the same jobs.
        putBack(taken.map((t) => t.userId));
        throw err;
      }
      backlog.count += kept.length;
    }
    const queued = events.length - dropped;
    if (queued > 0) deps.onQueued?.(queued);
    if (dropped > 0) {
      deps.onDropped?.(dropped, options.enabled ? 'backlog' : 'disabled');
      deps.logger.warn({ dropped, reason: options.enabled ? 'backlog' : 'disabled' }, 'webhook events dropped');
    }
    await redis
      .hincrby(keys.webhooks(), WEBHOOK_FIELDS.queued, queued)
      .then(() => (dropped > 0 ? redis.hincrby(keys.webhooks(), WEBHOOK_FIELDS.dropped, dropped) : 0))
      .catch(() => undefined);
    const left = await settle(
      taken.map((t) => redis.pbOutboxDone(keys.outbox(t.userId), keys.outboxLock(t.userId), options.nodeId, ...t.entryIds)),
    );
    taken.forEach((t, i) => {
      const n = left[i];
      // Written meanwhile, or the delete failed (then the same entries make the same job ids again).
      if (n instanceof Error || (n ?? 0) > 0) touched(t.userId, n instanceof Error ? 0 : (n ?? 0));
    });
    failures.succeeded();
  }

  function touched(userId: string, events = 1): void {
    if (closed) return;
    pending.set(userId, (pending.get(userId) ?? 0) + events);
    pendingEvents += events;
    schedule(pendingEvents >= batchSize ? 0 : maxWaitMs);
  }

  return {
    touched,
    async flush() {
      clock.clearTimeout(timer);
      timer = undefined;
      // Bounded: each run takes at least one user off the list, and a failing Redis stops it.
      for (let i = 0; i < 1000 && (pending.size > 0 || running !== undefined) && (i === 0 || !failures.failing); i += 1) {
        if (running !== undefined) await running;
        else await run();
      }
    },
    async close() {
      clock.clearTimeout(timer);
      timer = undefined;
      // One last move of what is known; anything left stays in Redis for the sweep.
      if (running !== undefined) await running;
      if (pending.size > 0) await run();
      closed = true;
      clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
