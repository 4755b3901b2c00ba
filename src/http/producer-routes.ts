import Router from '@koa/router';
import { AppError, errorCatalogue, isRedisUnavailable, retryAfterSeconds, type ErrorCode } from '../errors.js';
import type { NewMessage } from '../queue/mailbox.js';
import { MAX_SCHEDULE_AHEAD_MS, type ScheduledMessage } from '../queue/schedules.js';
import { serializeData, validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { outcomeUnknown, refused } from './storage.js';
import { batchBody, enqueueBody, tokenBody, userId as userIdSchema, type EnqueueBody } from './schemas.js';

/** Producer routes: enqueue one or many messages, issue stream tokens. */
export function producerRoutes(deps: AppDeps, guards: Guards): Router {
  const { config, mailbox, tokens, schedules, clock } = deps;
  const router = new Router();
  const { producer: auth, producerUnmetered, body, limits, storage } = guards;

  /** Messages per user, for their rate limits. */
  const perUser = (userIds: string[]) => {
    const counts = new Map<string, number>();
    for (const u of userIds) counts.set(u, (counts.get(u) ?? 0) + 1);
    return counts;
  };

  function toMessage(userId: string, m: EnqueueBody, index?: number): NewMessage {
    const data = serializeData(m.data, config.MESSAGE_MAX_BYTES, index === undefined ? undefined : `messages.${index}`);
    return { userId, event: m.event, data, key: m.key, ttlMs: m.ttlMs, push: m.push === undefined ? undefined : JSON.stringify(m.push) };
  }

  /**
   * When a message with `delayMs` / `deliverAt` is due, epoch ms; undefined
   * when it is due now (no schedule, or a time already past).
   */
  function dueAt(m: { delayMs?: number | undefined; deliverAt?: string | number | undefined }, index?: number) {
    const now = clock.now();
    let at: number | undefined;
    if (m.delayMs !== undefined) at = now + m.delayMs;
    else if (typeof m.deliverAt === 'number') at = m.deliverAt;
    else if (m.deliverAt !== undefined) at = Date.parse(m.deliverAt);
    if (at === undefined || at <= now) return undefined;
    if (at - now > MAX_SCHEDULE_AHEAD_MS) {
      const path = index === undefined ? 'deliverAt' : `messages.${index}.deliverAt`;
      const message = `${path}: at most a year ahead`;
      throw new AppError('PB_ERR_VALIDATION', message, { details: [{ path, message: 'at most a year ahead' }] });
    }
    return at;
  }

  router.post('/v1/users/:userId/messages', producerUnmetered, body, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const input = validate(enqueueBody, ctx.request.body);
    const message = toMessage(userId, input);
    const deliverAt = dueAt(input);
    await limits.take(1, perUser([userId]));
    if (deliverAt !== undefined) {
      // Held as a BullMQ delayed job; it enters the mailbox (and gets its event id) when due.
      const [scheduled] = await storage.write(() => schedules.scheduleMany([{ message, deliverAt }]));
      ctx.status = 202;
      ctx.body = {
        scheduledId: scheduled?.scheduledId,
        userId,
        deliverAt: new Date(scheduled?.deliverAt ?? deliverAt).toISOString(),
      };
      return;
    }
    // The enqueue wakes the nodes holding the user's streams (src/queue/mailbox.ts).
    const result = await storage.write(() => mailbox.enqueue(message));
    ctx.status = result.created ? 201 : 200;
    ctx.body = { id: result.id, userId, enqueuedAt: new Date(result.enqueuedAt).toISOString() };
  });

  router.post('/v1/messages', producerUnmetered, body, async (ctx) => {
    const batch = validate(batchBody, ctx.request.body);
    const all = batch.messages.map((m, i) => toMessage(m.userId, m, i));
    const due = batch.messages.map((m, i) => dueAt(m, i));
    const later = all.flatMap((message, index) => {
      const deliverAt = due[index];
      return deliverAt === undefined ? [] : [{ index, message, deliverAt }];
    });
    const nowIndexes = all.flatMap((_, index) => (due[index] === undefined ? [index] : []));
    const messages = nowIndexes.map((i) => all[i] as NewMessage);
    /** Redis away before anything was written: every message is refused, and the 503 says so for each. */
    const beforeWrites = async <T>(work: () => Promise<T>): Promise<T> => {
      try {
        return await work();
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'PB_ERR_REDIS_UNAVAILABLE') throw err;
        const message = errorCatalogue[err.code].message;
        const errors = all.map((m, index) => ({ index, userId: m.userId, code: err.code, message }));
        throw new AppError(err.code, undefined, { cause: err.cause, headers: err.headers, details: { ids: all.map(() => null), errors } });
      }
    };
    // One token per message, of the key's bucket and of each user's.
    await beforeWrites(() => limits.take(all.length, perUser(all.map((m) => m.userId))));
    // Check every queue first so a batch that would overflow one changes nothing.
    const lengths = await beforeWrites(() => storage.read(() => mailbox.lengths(messages.map((m) => m.userId))));
    for (const [userId, n] of perUser(messages.map((m) => m.userId))) {
      const length = lengths.get(userId) ?? 0;
      if (length + n > config.QUEUE_MAX_LENGTH) {
        throw new AppError(
          'PB_ERR_QUEUE_FULL',
          `the queue of user ${userId} holds ${length} messages; ${n} more would pass QUEUE_MAX_LENGTH`,
          { headers: { 'Retry-After': String(retryAfterSeconds(config.ACK_TIMEOUT_MS)) }, details: { userId } },
        );
      }
    }
    await beforeWrites(async () => storage.ready());
    const errors: Array<{ index: number; userId: string; code: ErrorCode; message: string }> = [];
    const failed = (index: number, err: AppError) =>
      errors.push({ index, userId: all[index]?.userId ?? '', code: err.code, message: errorCatalogue[err.code].message });
    // One slot per message of the request; scheduled ones are null here and listed in `scheduled`.
    const ids: Array<string | null> = all.map(() => null);
    let scheduled: ScheduledMessage[] = [];
    let lost: AppError | undefined;
    try {
      scheduled = await schedules.scheduleMany(later);
    } catch (err) {
      if (!isRedisUnavailable(err)) throw err;
      // Sent as one transaction: each of them may or may not be scheduled; the rest were not sent.
      lost = outcomeUnknown(err);
      for (const { index } of later) failed(index, lost);
      for (const index of nowIndexes) failed(index, refused(err));
    }
    if (lost === undefined) {
      // Each message on its own, so each has its own outcome when Redis goes away midway;
      // written in this order on one connection, so each user's messages keep their order.
      const results = await Promise.allSettled(messages.map((m) => mailbox.enqueue(m)));
      results.forEach((r, i) => {
        const index = nowIndexes[i] as number;
        if (r.status === 'fulfilled') {
          ids[index] = r.value.id;
        } else if (r.reason instanceof AppError) {
          // Only a concurrent producer filling the queue between the check and the write lands here.
          errors.push({ index, userId: all[index]?.userId ?? '', code: r.reason.code, message: r.reason.message });
        } else if (isRedisUnavailable(r.reason)) {
          lost ??= outcomeUnknown(r.reason);
          failed(index, outcomeUnknown(r.reason));
        } else {
          throw r.reason;
        }
      });
    }
    errors.sort((a, b) => a.index - b.index);
    const report = {
      ids,
      ...(scheduled.length > 0
        ? {
            scheduled: scheduled.map((s, i) => ({
              index: later[i]?.index,
              scheduledId: s.scheduledId,
              userId: s.userId,
              deliverAt: new Date(s.deliverAt).toISOString(),
            })),
          }
        : {}),
      ...(errors.length > 0 ? { errors } : {}),
    };
    if (lost !== undefined) {
      // 503: not all of it is known to be stored. The details say, per message, what is.
      throw new AppError(lost.code, undefined, { cause: lost.cause, headers: lost.headers, details: report });
    }
    ctx.status = messages.length > 0 ? 201 : 202;
    ctx.body = report;
  });

  router.post('/v1/tokens', auth, body, async (ctx) => {
    const { userId, ttlSeconds } = validate(tokenBody, ctx.request.body);
    ctx.status = 201;
    ctx.body = await tokens.issue(userId, ttlSeconds ?? config.TOKEN_TTL_SECONDS);
  });

  return router;
}
