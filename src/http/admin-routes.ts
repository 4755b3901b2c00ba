import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { enqueuedAtOf } from '../queue/keys.js';
import { eventId, roomName, userId as userIdSchema } from './schemas.js';

/** Every time in a JSON response is an ISO 8601 string (UTC, ms); durations are ms named `…Ms`. */
const iso = (ms: number) => new Date(ms).toISOString();

const limit = (fallback: number) => z.coerce.number().int().min(1).max(1000, 'limit: at most 1000').default(fallback);

const listQuery = z.object({
  limit: limit(50),
  // No sort: index order (when users first got messages) with a keyset cursor.
  sort: z.enum(['index', 'backlog', 'age']).default('index'),
  cursor: z.string().min(1).max(1024).optional(),
});
const viewQuery = z.object({ limit: limit(50) });
const pageQuery = z.object({ limit: limit(50), cursor: roomName.optional() });
const retryBody = z.strictObject({ ids: z.array(eventId).min(1).max(1000, 'at most 1000 ids per call').optional() });

/**
 * Admin API: list, inspect and repair users' queues, and node stats. Bearer
 * ADMIN_KEY only (`requireKey`: anything else is 401, the producer key or a
 * stream token 403). Every change is logged at info with who, what, target
 * and when.
 */
export function adminRoutes(deps: AppDeps, guards: Guards): Router {
  const { delivery, logger, clock, rates, admin: queries } = deps;
  const { hub } = delivery;
  const router = new Router();
  const { admin: auth, body, storage } = guards;

  /** The audit line of one admin change. There is one admin key, so "who" is that role plus the caller's address. */
  function audit(ctx: Context, action: string, target: Record<string, unknown>, result: Record<string, unknown>): void {
    logger.info(
      { audit: { actor: 'admin', ip: ctx.ip, action, target, at: new Date(clock.now()).toISOString() }, result },
      `admin ${action}`,
    );
  }

  /** A retry body is optional: no body at all means "every dead letter". */
  const optionalBody = async (ctx: Context, next: () => Promise<unknown>) => {
    const empty = (ctx.request.length ?? 0) === 0 && ctx.get('transfer-encoding') === '';
    if (empty) {
      ctx.request.body = {};
      return next();
    }
    return body(ctx, next);
  };

  router.get('/admin/queues', auth, async (ctx) => {
    const query = validate(listQuery, ctx.query);
    const page = await queries.list(query);
    ctx.body = { ...page, queues: page.queues.map((q) => ({ ...q, connections: hub.count(q.userId) })) };
  });

  router.get('/admin/queues/:userId', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const { limit: max } = validate(viewQuery, ctx.query);
    const [view, scheduled, recurring, pushSubscriptions] = await Promise.all([
      queries.inspect(userId, max),
      queries.scheduledCount(userId),
      deps.schedules.listRecurring(userId),
      deps.push?.subscriptions.count(userId) ?? Promise.resolve(0),
    ]);
    if (view === undefined && scheduled.scheduled === 0 && recurring.length === 0) {
      throw new AppError('PB_ERR_USER_NOT_FOUND', `user ${userId} has no queue`);
    }
    const empty = { userId, waiting: 0, inflight: 0, expired: 0, dead: 0, oldestWaiting: [], inflightMessages: [], deadLetters: [] };
    const oldest = view?.oldestWaiting[0]?.id;
    ctx.body = {
      ...(view ?? empty),
      scheduled: scheduled.scheduled,
      scheduledTruncated: scheduled.truncated,
      recurring: recurring.length,
      connections: hub.count(userId),
      // Web Push subscriptions (browsers that get this user's pushes); null when push is off.
      pushSubscriptions: deps.push === undefined ? null : pushSubscriptions,
      oldestWaitingAgeMs: oldest === undefined ? null : Math.max(0, clock.now() - enqueuedAtOf(oldest)),
    };
  });

  router.delete('/admin/queues/:userId', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const removed = await storage.write(() => queries.purge(userId));
    if (removed === undefined) throw new AppError('PB_ERR_USER_NOT_FOUND', `user ${userId} has no queue`);
    audit(ctx, 'purge', { userId }, removed);
    ctx.body = { userId, removed };
  });

  router.post('/admin/queues/:userId/dead/retry', auth, optionalBody, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const { ids } = validate(retryBody, ctx.request.body ?? {});
    const result = await storage.write(() => queries.retryDead(userId, ids));
    if (result === undefined) throw new AppError('PB_ERR_USER_NOT_FOUND', `user ${userId} has no queue`);
    audit(ctx, 'retry-dead', { userId, ids: ids ?? 'all' }, { ...result });
    ctx.body = { userId, ...result };
  });

  router.delete('/admin/queues/:userId/messages/:id', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const id = validate(eventId, ctx.params.id);
    const outcome = await storage.write(() => queries.deleteMessage(userId, id));
    if (outcome === 'no-user') throw new AppError('PB_ERR_USER_NOT_FOUND', `user ${userId} has no queue`);
    if (outcome === 'no-message') {
      throw new AppError('PB_ERR_MESSAGE_NOT_FOUND', `user ${userId} has no waiting or in-flight message ${id}`);
    }
    // A freed in-flight slot lets the drain write the next message now rather than on the next tick.
    delivery.wakeAnywhere(userId);
    audit(ctx, 'delete-message', { userId, id }, { removed: 1 });
    ctx.body = { userId, id, removed: true };
  });

  router.get('/admin/stats', auth, async (ctx) => {
    const [totals, nodes, webhooks] = await Promise.all([queries.totals(), rates.nodes(), deps.webhooks.read()]);
    ctx.body = {
      at: new Date(clock.now()).toISOString(),
      totals,
      node: { name: rates.node, streams: hub.size, users: hub.userCount },
      nodes: nodes.map((n) => ({ ...n, at: iso(n.at) })),
      // This node's counters; every node samples its own.
      rates: { windowSeconds: 60, perSecond: rates.rates(60_000) },
      series: rates.series().map((p) => ({ ...p, t: iso(p.t) })),
      webhooks,
    };
  });

  router.get('/admin/rooms', auth, async (ctx) => {
    const { limit: max, cursor } = validate(pageQuery, ctx.query);
    ctx.body = await queries.rooms(cursor, max);
  });

  router.get('/admin/rooms/:room', auth, async (ctx) => {
    const room = validate(roomName, ctx.params.room);
    const { limit: max, cursor } = validate(pageQuery, ctx.query);
    const detail = await queries.room(room, cursor, max);
    if (detail === undefined) throw new AppError('PB_ERR_ROOM_NOT_FOUND', `room ${room} has no members`);
    ctx.body = {
      room,
      members: detail.members,
      // Members in name order, with their streams on this node.
      page: detail.page.map((userId) => ({ userId, connections: hub.count(userId) })),
      nextCursor: detail.nextCursor,
      fanouts: detail.fanouts,
    };
  });

  return router;
}
