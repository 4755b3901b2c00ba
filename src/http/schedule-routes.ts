import Router from '@koa/router';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { MAX_SCHEDULE_AHEAD_MS, MIN_EVERY_MS, SCHEDULED_ID_PATTERN } from '../queue/schedules.js';
import { serializeData, validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { eventName, messageData, ttlMs, userId as userIdSchema } from './schemas.js';

const scheduleName = z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'schedule name must match ^[A-Za-z0-9._:-]{1,64}$');
const scheduledId = z.string().regex(SCHEDULED_ID_PATTERN, 'not a scheduled message id');

const recurringBody = z
  .strictObject({
    /** Period, ms. */
    every: z
      .number()
      .int()
      .min(MIN_EVERY_MS, `every must be at least ${MIN_EVERY_MS} ms`)
      .max(365 * 86_400_000)
      .optional(),
    /** Cron pattern: 5 fields, or 6 with seconds first. */
    cron: z.string().min(1).max(256).optional(),
    /** IANA time zone of `cron`. */
    tz: z.string().min(1).max(64).optional(),
    event: eventName.default('message'),
    data: messageData,
    /** Each message is dropped, never delivered, this long after it is sent. */
    ttlMs: ttlMs.optional(),
    /** Nothing is sent after this time (ISO 8601 or epoch ms): the schedule lapses by itself. */
    until: z.union([z.iso.datetime({ offset: true }), z.number().int().min(0)]).optional(),
  })
  .refine((b) => (b.every === undefined) !== (b.cron === undefined), {
    message: 'give exactly one of every (ms) or cron',
    path: ['every'],
  })
  .refine((b) => b.tz === undefined || b.cron !== undefined, { message: 'tz applies to cron only', path: ['tz'] });

/**
 * Cancelling scheduled messages, and recurring schedules (BullMQ job
 * schedulers) per user: PUT creates or replaces one, GET lists, DELETE removes.
 */
export function scheduleRoutes(deps: AppDeps, guards: Guards): Router {
  const { config, schedules } = deps;
  const router = new Router();
  const { producer: auth, body, storage } = guards;

  router.delete('/v1/users/:userId/scheduled/:id', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const id = ctx.params.id ?? '';
    // A malformed id cannot name a scheduled message: 404 like any unknown one.
    if (!scheduledId.safeParse(id).success || !(await storage.write(() => schedules.cancel(userId, id)))) {
      throw new AppError('PB_ERR_SCHEDULED_NOT_FOUND', `user ${userId} has no pending scheduled message ${id}`);
    }
    ctx.status = 204;
  });

  router.put('/v1/users/:userId/schedules/:name', auth, body, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const name = validate(scheduleName, ctx.params.name);
    const input = validate(recurringBody, ctx.request.body);
    const data = serializeData(input.data, config.MESSAGE_MAX_BYTES);
    const until = input.until === undefined ? undefined : typeof input.until === 'number' ? input.until : Date.parse(input.until);
    if (until !== undefined && (until <= deps.clock.now() || until > deps.clock.now() + MAX_SCHEDULE_AHEAD_MS)) {
      throw new AppError('PB_ERR_VALIDATION', 'until: must be in the future, at most a year ahead', {
        details: [{ path: 'until', message: 'must be in the future, at most a year ahead' }],
      });
    }
    const { created, view } = await storage.write(() => schedules.upsertRecurring(userId, name, {
      every: input.every,
      cron: input.cron,
      tz: input.tz,
      event: input.event,
      data,
      ttlMs: input.ttlMs,
      until,
    }));
    ctx.status = created ? 201 : 200;
    ctx.body = { userId, ...view };
  });

  router.get('/v1/users/:userId/schedules', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    ctx.body = { userId, schedules: await schedules.listRecurring(userId) };
  });

  router.delete('/v1/users/:userId/schedules/:name', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const name = validate(scheduleName, ctx.params.name);
    if (!(await storage.write(() => schedules.removeRecurring(userId, name)))) {
      throw new AppError('PB_ERR_SCHEDULE_NOT_FOUND', `user ${userId} has no schedule ${name}`);
    }
    ctx.status = 204;
  });

  return router;
}
