import Router from '@koa/router';
import { AppError } from '../errors.js';
import { subscriberCors } from './cors.js';
import { validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { Guards, StreamState } from './guards.js';
import { ackBody, eventId } from './schemas.js';

/** Subscriber routes: the user's event stream and acknowledgements. The user comes from the token. */
export function subscriberRoutes(deps: AppDeps, guards: Guards): Router<StreamState> {
  const { config, mailbox, delivery, logger } = deps;
  const router = new Router<StreamState>();
  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options(['/v1/stream', '/v1/acks'], cors);

  router.get('/v1/stream', cors, guards.stream, async (ctx) => {
    const { userId } = ctx.state;
    if (deps.isClosing()) throw new AppError('PB_ERR_SHUTTING_DOWN');
    const header = ctx.get('last-event-id');
    const query = typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '';
    const lastEventId = header || query;
    if (lastEventId !== '') validate(eventId, lastEventId);
    if (delivery.hub.count(userId) >= config.MAX_STREAMS_PER_USER) {
      throw new AppError(
        'PB_ERR_TOO_MANY_STREAMS',
        `user ${userId} already has ${config.MAX_STREAMS_PER_USER} open streams on this node`,
        { headers: { 'Retry-After': String(Math.max(1, Math.ceil(config.RETRY_MS / 1000))) } },
      );
    }
    if (lastEventId !== '') {
      // The browser has everything up to this id. If Redis is away, the ack is lost
      // and those messages come again; the client drops them by id.
      try {
        await mailbox.ackUpTo(userId, lastEventId);
      } catch (err) {
        logger.warn({ err, userId }, 'Last-Event-ID ack failed; messages will be redelivered');
      }
    }
    // The session lifts the idle timeout of the socket (HTTP/1.1) or the stream (HTTP/2).
    ctx.respond = false;
    delivery.openStream(userId, ctx.res);
  });

  router.post('/v1/acks', cors, guards.stream, guards.body, async (ctx) => {
    const { userId } = ctx.state;
    const { ids } = validate(ackBody, ctx.request.body);
    const acked = await mailbox.ack(userId, ids);
    delivery.acked(userId, acked);
    ctx.body = { acked };
  });

  return router;
}
