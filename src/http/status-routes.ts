import Router from '@koa/router';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { subscriberCors } from './cors.js';
import { validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards, StreamState } from './guards.js';
import { statusBody, userId as userIdSchema } from './schemas.js';

/** An event id or a scheduled id; anything else cannot name a message (404, like an unknown one). */
const messageId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/**
 * What became of messages, for the producer (receipts, src/queue/receipts.ts),
 * and the counts of the token's user, for a page's badge.
 */
export function statusRoutes(deps: AppDeps, guards: Guards): Router<StreamState> {
  const { config, status } = deps;
  const router = new Router<StreamState>();
  const { producer: auth, body } = guards;

  router.get('/v1/users/:userId/messages/:id', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const id = ctx.params.id ?? '';
    const [found] = messageId.safeParse(id).success ? await status.status([{ userId, id }]) : [undefined];
    if (found === undefined) {
      throw new AppError(
        'PB_ERR_MESSAGE_NOT_FOUND',
        `user ${userId} has no message ${id} (never enqueued, or done longer than RECEIPT_RETENTION_MS ago)`,
      );
    }
    ctx.body = found;
  });

  // One script call per user, issued together: one round trip per Redis node for the whole batch.
  router.post('/v1/messages/status', auth, body, async (ctx) => {
    const { messages } = validate(statusBody, ctx.request.body);
    const found = await status.status(messages);
    ctx.body = {
      messages: messages.map((m, i) => ({ userId: m.userId, ...(found[i] ?? { id: m.id, state: 'unknown' }) })),
    };
  });

  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options('/v1/me/counts', cors);
  router.get('/v1/me/counts', cors, guards.stream, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await status.counts(ctx.state.userId);
  });

  return router;
}
