import Router from '@koa/router';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { serializeData, validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { eventName, idempotencyKey, messageData, pushOption, roomName, ttlMs, userId as userIdSchema } from './schemas.js';

const membersQuery = z.object({
  cursor: userIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(1000, 'at most 1000 per page').default(100),
});

const joinBody = z.strictObject({
  userIds: z.array(userIdSchema).min(1).max(1000, 'at most 1000 user ids per call'),
});

const roomMessageBody = z.strictObject({
  event: eventName.default('message'),
  data: messageData,
  /** Usually the sender, who already has the message. */
  exceptUserId: userIdSchema.optional(),
  /** Counted from the send: members reached later get what is left; none once it has passed. */
  ttlMs: ttlMs.optional(),
  /** Idempotency: the same key for the same room is one room message (a producer's retry). */
  key: idempotencyKey.optional(),
  /** Every member's copy is also sent by Web Push to members with no open stream. */
  push: pushOption.optional(),
});

/**
 * Rooms: membership (producer key) and room messages, which answer 202 at
 * once and fan out to every member's mailbox in a BullMQ job.
 */
export function roomRoutes(deps: AppDeps, guards: Guards): Router {
  const { config, rooms } = deps;
  const router = new Router();
  const { producer: auth, body, storage } = guards;

  const roomParam = (value: string | undefined) => validate(roomName, value);
  const notFound = (room: string) => new AppError('PB_ERR_ROOM_NOT_FOUND', `room ${room} has no members`);

  router.put('/v1/rooms/:room/members/:userId', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const userId = validate(userIdSchema, ctx.params.userId);
    await storage.write(() => rooms.join(room, [userId]));
    ctx.status = 204;
  });

  // Many members in one call (not in the spec's table; seeding large rooms one PUT at a time is slow).
  router.post('/v1/rooms/:room/members', auth, body, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const { userIds } = validate(joinBody, ctx.request.body);
    const added = await storage.write(() => rooms.join(room, userIds));
    ctx.body = { added };
  });

  router.delete('/v1/rooms/:room/members/:userId', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const userId = validate(userIdSchema, ctx.params.userId);
    if (!(await storage.write(() => rooms.leave(room, userId)))) {
      throw new AppError('PB_ERR_NOT_A_MEMBER', `user ${userId} is not a member of room ${room}`);
    }
    ctx.status = 204;
  });

  router.get('/v1/rooms/:room/members', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const { cursor, limit } = validate(membersQuery, ctx.query);
    // One extra member tells whether another page exists.
    const [{ members: count }, page] = await Promise.all([rooms.count(room), rooms.page(room, cursor, limit + 1)]);
    if (count === 0) throw notFound(room);
    const members = page.slice(0, limit);
    ctx.body = {
      room,
      count,
      members,
      // Members are in lexical order; the next page starts after the last one.
      nextCursor: page.length > limit ? (members[members.length - 1] ?? null) : null,
    };
  });

  router.post('/v1/rooms/:room/messages', auth, body, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const input = validate(roomMessageBody, ctx.request.body);
    const data = serializeData(input.data, config.MESSAGE_MAX_BYTES);
    const push = input.push === undefined ? undefined : JSON.stringify(input.push);
    const sent = await storage.write(() => rooms.send(room, { ...input, data, push }));
    if (sent === undefined) throw notFound(room);
    ctx.status = 202;
    ctx.body = { jobId: sent.jobId, members: sent.recipients };
  });

  return router;
}
