import Router from '@koa/router';
import { AppError, retryAfterSeconds } from '../errors.js';
import type { NewMessage } from '../queue/mailbox.js';
import { MAX_SCHEDULE_AHEAD_MS } from '../queue/schedules.js';
import { serializeData, validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { batchBody, enqueueBody, tokenBody, userId as userIdSchema, type EnqueueBody } from './schemas.js';

/** Producer routes: enqueue one or many messages, issue stream tokens. */
export function producerRoutes(deps: AppDeps, guards: Guards): Router {
  const { config, mailbox, tokens, schedules, clock } = deps;
  const router = new Router();
  const { producer: auth, body } = guards;

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

  router.post('/v1/users/:userId/messages', auth, body, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const input = validate(enqueueBody, ctx.request.body);
    const message = toMessage(userId, input);
    const deliverAt = dueAt(input);
    if (deliverAt !== undefined) {
      // Held as a BullMQ delayed job; it enters the mailbox (and gets its event id) when due.
      const [scheduled] = await schedules.scheduleMany([{ message, deliverAt }]);
      ctx.status = 202;
      ctx.body = {
        scheduledId: scheduled?.scheduledId,
        userId,
        deliverAt: new Date(scheduled?.deliverAt ?? deliverAt).toISOString(),
      };
      return;
    }
    // The enqueue wakes the nodes holding the user's streams (src/queue/mailbox.ts).
    const result = await mailbox.enqueue(message);
    ctx.status = result.created ? 201 : 200;
    ctx.body = { id: result.id, userId, enqueuedAt: new Date(result.enqueuedAt).toISOString() };
  });

  router.post('/v1/messages', auth, body, async (ctx) => {
    const batch = validate(batchBody, ctx.request.body);
    const all = batch.messages.map((m, i) => toMessage(m.userId, m, i));
    const due = batch.messages.map((m, i) => dueAt(m, i));
    const later = all.flatMap((message, index) => {
      const deliverAt = due[index];
      return deliverAt === undefined ? [] : [{ index, message, deliverAt }];
    });
    const nowIndexes = all.flatMap((_, index) => (due[index] === undefined ? [index] : []));
    const messages = nowIndexes.map((i) => all[i] as NewMessage);
    // Check every queue first so a batch that would overflow one changes nothing.
    const lengths = await mailbox.lengths(messages.map((m) => m.userId));
    const incoming = new Map<string, number>();
    for (const m of messages) incoming.set(m.userId, (incoming.get(m.userId) ?? 0) + 1);
    for (const [userId, n] of incoming) {
      const length = lengths.get(userId) ?? 0;
      if (length + n > config.QUEUE_MAX_LENGTH) {
        throw new AppError(
          'PB_ERR_QUEUE_FULL',
          `the queue of user ${userId} holds ${length} messages; ${n} more would pass QUEUE_MAX_LENGTH`,
          { headers: { 'Retry-After': String(retryAfterSeconds(config.ACK_TIMEOUT_MS)) }, details: { userId } },
        );
      }
    }
    const scheduled = await schedules.scheduleMany(later);
    const results = messages.length > 0 ? await mailbox.enqueueMany(messages) : [];
    const errors: Array<{ index: number; userId: string; code: string; message: string }> = [];
    // One slot per message of the request; scheduled ones are null here and listed in `scheduled`.
    const ids: Array<string | null> = all.map(() => null);
    results.forEach((r, i) => {
      const index = nowIndexes[i] as number;
      if (r instanceof AppError) {
        // Only a concurrent producer filling the queue between the check and the write lands here.
        errors.push({ index, userId: messages[i]?.userId ?? '', code: r.code, message: r.message });
        return;
      }
      ids[index] = r.id;
    });
    ctx.status = messages.length > 0 ? 201 : 202;
    ctx.body = {
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
  });

  router.post('/v1/tokens', auth, body, async (ctx) => {
    const { userId, ttlSeconds } = validate(tokenBody, ctx.request.body);
    ctx.status = 201;
    ctx.body = await tokens.issue(userId, ttlSeconds ?? config.TOKEN_TTL_SECONDS);
  });

  return router;
}
