import Router from '@koa/router';
import { AppError } from '../errors.js';
import { subscriberCors } from './cors.js';
import { validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { AckState, Guards, StreamState } from './guards.js';
import { ackBody, eventId } from './schemas.js';

/** The stream's response headers, also the answer to a HEAD (WHATWG HTML §9.2: text/event-stream). */
const STREAM_HEADERS = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform' };

/** Subscriber routes: the user's event stream, acks and nacks. The user comes from the token. */
export function subscriberRoutes(deps: AppDeps, guards: Guards): Router<StreamState> {
  const { config, mailbox, delivery, logger } = deps;
  const router = new Router<StreamState>();
  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options(['/v1/stream', '/v1/acks', '/v1/nacks'], cors);

  router.get('/v1/stream', cors, guards.stream, async (ctx) => {
    const { userId } = ctx.state;
    if (deps.isClosing()) throw new AppError('PB_ERR_SHUTTING_DOWN');
    const header = ctx.get('last-event-id');
    const query = typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '';
    const lastEventId = header || query;
    if (lastEventId !== '') validate(eventId, lastEventId);
    if (ctx.method === 'HEAD') {
      // A monitor or `curl -I`: the stream's headers, and no stream: nothing is written, so
      // nothing is delivered, and no slot of the user's streams is taken.
      ctx.set(STREAM_HEADERS);
      ctx.status = 200;
      return;
    }
    if (delivery.hub.count(userId) >= config.MAX_STREAMS_PER_USER) {
      throw new AppError(
        'PB_ERR_TOO_MANY_STREAMS',
        `user ${userId} already has ${config.MAX_STREAMS_PER_USER} open streams on this node`,
        { headers: { 'Retry-After': String(Math.max(1, Math.ceil(config.RETRY_MS / 1000))) } },
      );
    }
    if (lastEventId !== '' && config.LAST_EVENT_ID_ACKS) {
      // Opted in: the browser has everything up to this id. If Redis is away, the ack is lost
      // and those messages come again; the client drops them by id.
      try {
        const { acked, wake } = await mailbox.ack(userId, [], lastEventId);
        delivery.acked(userId, acked, wake);
      } catch (err) {
        logger.warn({ err, userId }, 'Last-Event-ID ack failed; messages will be redelivered');
      }
    }
    // Without the opt-in, Last-Event-ID acks nothing: what is still in flight is written again
    // first (a browser sends the last id it received, not the last one its handler finished).
    // The session lifts the idle timeout of the socket (HTTP/1.1) or the stream (HTTP/2).
    ctx.respond = false;
    delivery.openStream(userId, ctx.res);
  });

  router.post('/v1/acks', cors, guards.ack, guards.body, async (ctx) => {
    const { userId, onlyId } = ctx.state as AckState;
    const { ids } = validate(ackBody, ctx.request.body);
    if (onlyId !== undefined && (ids.length !== 1 || ids[0] !== onlyId)) {
      // A push's credential acks its own message and nothing else.
      throw new AppError('PB_ERR_FORBIDDEN', `this push ack credential acks message ${onlyId} only`);
    }
    const { acked, wake } = onlyId !== undefined && deps.push ? await deps.push.ack(userId, onlyId) : await mailbox.ack(userId, ids);
    // delivery.acked() tells the user's other tabs; a push ack came from no tab, so a single
    // open tab is "other" too and is told here (tabs on other nodes are told by ack.lua).
    if (onlyId !== undefined && acked.length > 0 && delivery.hub.count(userId) === 1) {
      delivery.hub.control(userId, 'acked', { ids: acked });
    }
    delivery.acked(userId, acked, wake);
    ctx.body = { acked: acked.length };
  });

  // The client library's report that its handler failed: each id counts as a delivery now.
  router.post('/v1/nacks', cors, guards.stream, guards.body, async (ctx) => {
    const { userId } = ctx.state;
    const { ids } = validate(ackBody, ctx.request.body);
    ctx.body = { counted: await mailbox.nack(userId, ids) };
  });

  return router;
}
