import { createHash, randomUUID } from 'node:crypto';
import Router from '@koa/router';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { requireKey } from './auth.js';
import { jsonBody, serializeData, validate } from './body.js';
import type { AppDeps } from './deps.js';
import { eventName, idempotencyKey, messageData, roomName, ttlMs, userId as userIdSchema } from './schemas.js';


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
});

/**
 * The fan-out job's id, from which every member's idempotency key derives.
 * With a producer `key` it is the same for the same room and key: BullMQ adds
 * no second job while the first is kept, and after that the members' mailboxes
 * still refuse it again within FANOUT_DEDUP_WINDOW_MS. Without one it is
 * random, so it never repeats even if BullMQ's counter starts over.
 */
function roomJobId(room: string, key: string | undefined): string {
  if (key === undefined) return `r-${randomUUID()}`;
  return `rk-${createHash('sha256').update(`${room}\n${key}`).digest('base64url')}`;
}

/**
 * Rooms: membership (producer key) and room messages, which answer 202 at
 * once and fan out to every member's mailbox in a BullMQ job.
 */
export function roomRoutes(deps: AppDeps): Router {
  const { config, rooms, fanout, tokens, clock } = deps;
  const router = new Router();
  const auth = requireKey('producer', { apiKey: config.API_KEY, adminKey: config.ADMIN_KEY }, tokens);
  const body = jsonBody(config.BODY_MAX_BYTES);

  const roomParam = (value: string | undefined) => validate(roomName, value);
  const notFound = (room: string) => new AppError('PB_ERR_ROOM_NOT_FOUND', `room ${room} has no members`);

  router.put('/v1/rooms/:room/members/:userId', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const userId = validate(userIdSchema, ctx.params.userId);
    await rooms.join(room, [userId]);
    ctx.status = 204;
  });

  // Many members in one call (not in the spec's table; seeding large rooms one PUT at a time is slow).
  router.post('/v1/rooms/:room/members', auth, body, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const { userIds } = validate(joinBody, ctx.request.body);
    const added = await rooms.join(room, userIds);
    ctx.body = { added };
  });

  router.delete('/v1/rooms/:room/members/:userId', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const userId = validate(userIdSchema, ctx.params.userId);
    if (!(await rooms.leave(room, userId))) {
      throw new AppError('PB_ERR_NOT_A_MEMBER', `user ${userId} is not a member of room ${room}`);
    }
    ctx.status = 204;
  });

  router.get('/v1/rooms/:room/members', auth, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const { cursor, limit } = validate(membersQuery, ctx.query);
    const [{ members: count }, members] = await Promise.all([rooms.count(room), rooms.page(room, cursor, limit)]);
    if (count === 0) throw notFound(room);
    ctx.body = {
      room,
      count,
      members,
      // Members are in lexical order; the next page starts after the last one.
      nextCursor: members.length === limit ? (members[members.length - 1] ?? null) : null,
    };
  });

  router.post('/v1/rooms/:room/messages', auth, body, async (ctx) => {
    const room = roomParam(ctx.params.room);
    const input = validate(roomMessageBody, ctx.request.body);
    const data = serializeData(input.data, config.MESSAGE_MAX_BYTES);
    const { members, isMember } = await rooms.count(room, input.exceptUserId);
    if (members === 0) throw notFound(room);
    const recipients = members - (isMember ? 1 : 0);
    const job = await fanout.add(
      'room-message',
      {
        room,
        event: input.event,
        data,
        exceptUserId: input.exceptUserId,
        expiresAt: input.ttlMs === undefined ? undefined : clock.now() + input.ttlMs,
        members,
      },
      { jobId: roomJobId(room, input.key) },
    );
    ctx.status = 202;
    ctx.body = { jobId: job.id, members: recipients };
  });

  return router;
}
