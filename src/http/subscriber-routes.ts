import Router from '@koa/router';
import { AppError } from '../errors.js';
import { requireStreamToken } from './auth.js';
import { subscriberCors } from './cors.js';
import { jsonBody, validate } from './body.js';
import type { AppDeps } from './deps.js';
import { ackBody, eventId } from './schemas.js';
import { SseSession } from './sse-session.js';

/** Subscriber routes: the user's event stream and acknowledgements. The user comes from the token. */
export function subscriberRoutes(deps: AppDeps): Router {
  const { config, mailbox, hub, drain, metrics, logger, clock, tokens } = deps;
  const router = new Router();
  const auth = requireStreamToken({ apiKey: config.API_KEY, adminKey: config.ADMIN_KEY }, tokens);
  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options(['/v1/stream', '/v1/acks'], cors);

  router.get('/v1/stream', cors, auth, async (ctx) => {
    const userId = ctx.state.userId as string;
    if (deps.isClosing()) throw new AppError('PB_ERR_SHUTTING_DOWN');
    const header = ctx.get('last-event-id');
    const query = typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '';
    const lastEventId = header || query;
    if (lastEventId !== '') validate(eventId, lastEventId);
    if (hub.count(userId) >= config.MAX_STREAMS_PER_USER) {
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
        metrics.acked.inc(await mailbox.ackUpTo(userId, lastEventId));
      } catch (err) {
        logger.warn({ err, userId }, 'Last-Event-ID ack failed; messages will be redelivered');
      }
    }
    // The session lifts the idle timeout of the socket (HTTP/1.1) or the stream (HTTP/2).
    ctx.respond = false;
    const session = new SseSession(userId, ctx.res, clock, {
      retryMs: config.RETRY_MS,
      writeStallMs: config.WRITE_STALL_MS,
    });
    hub.add(session);
  });

  router.post('/v1/acks', cors, auth, jsonBody(config.BODY_MAX_BYTES), async (ctx) => {
    const userId = ctx.state.userId as string;
    const { ids } = validate(ackBody, ctx.request.body);
    const acked = await mailbox.ack(userId, ids);
    metrics.acked.inc(acked);
    // Room opened in the in-flight window: drain at once, here or on the node that pops for the user.
    if (acked > 0 && !drain.acked(userId, acked)) deps.wake(userId);
    ctx.body = { acked };
  });

  return router;
}
