import type { ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import Router from '@koa/router';
import { AppError } from '../errors.js';
import { subscriberCors } from './cors.js';
import { validate } from './body.js';
import type { AppDeps } from './deps.js';
import type { AckState, Guards, StreamState } from './guards.js';
import { ackBody, eventId, nackBody } from './schemas.js';

/** The stream's response headers, also the answer to a HEAD (WHATWG HTML §9.2: text/event-stream). */
const STREAM_HEADERS = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform' };

/** Whether the client of this response has gone (its connection or HTTP/2 stream closed). */
function isGone(res: ServerResponse | Http2ServerResponse): boolean {
  if (res instanceof Http2ServerResponse) return res.stream.destroyed || res.stream.closed;
  return res.destroyed || res.writableEnded || res.socket === null || res.socket.destroyed;
}

/** Subscriber routes: the user's event stream, acks and nacks. The user comes from the token. */
export function subscriberRoutes(deps: AppDeps, guards: Guards): Router<StreamState> {
  const { config, mailbox, delivery, logger } = deps;
  const router = new Router<StreamState>();
  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options(['/v1/stream', '/v1/acks', '/v1/nacks'], cors);

  router.get('/v1/stream', cors, guards.streams.opens, guards.stream, async (ctx) => {
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
    // The page may have left while this request awaited (the token's check, a Last-Event-ID ack
    // on a slow Redis): a session on a closed response would never see its close and would hold
    // one of the user's stream slots, and take writes, until a heartbeat stalled.
    if (isGone(ctx.res)) {
      ctx.respond = false;
      return;
    }
    // Counted from here to the stream's close, with nothing awaited in between.
    const slot = guards.streams.admit();
    ctx.respond = false;
    try {
      // Opt-ins, so a stream read as raw text carries only what it asked for; the client library
      // asks for both. `?announce=1`: each event named before its first message. `?notices=1`:
      // postbox.counts (and postbox.expired when messages expired unwritten) first.
      delivery
        .openStream(userId, ctx.res, { announceEvents: ctx.query.announce === '1', notices: ctx.query.notices === '1' })
        .onClose(slot.closed);
    } catch (err) {
      slot.closed();
      throw err;
    }
  });

  router.post('/v1/acks', cors, guards.ack, guards.body, async (ctx) => {
    const { userId, onlyId } = ctx.state as AckState;
    const { ids } = validate(ackBody, ctx.request.body);
    if (onlyId !== undefined && (ids.length !== 1 || ids[0] !== onlyId)) {
      // A push's credential acks its own message and nothing else.
      throw new AppError('PB_ERR_FORBIDDEN', `this push ack credential acks message ${onlyId} only`);
    }
    const { acked, wake } = onlyId !== undefined && deps.push ? await guards.storage.write(() => deps.push!.ack(userId, onlyId)) : await guards.storage.write(() => mailbox.ack(userId, ids));
    // delivery.acked() tells the user's other tabs; a push ack came from no tab, so a single
    // open tab is "other" too and is told here (tabs on other nodes are told by ack.lua).
    if (onlyId !== undefined && acked.length > 0 && delivery.hub.count(userId) === 1) {
      delivery.hub.control(userId, 'acked', { ids: acked });
    }
    delivery.acked(userId, acked, wake);
    ctx.body = { acked: acked.length };
  });

  // The client library's report on messages it did not handle: its handler failed (the missed
  // ack counts as a delivery), or it has no handler for their event (it does not count; the
  // message stays for a tab that has one, and becomes a dead letter `unhandled` after MAX_ATTEMPTS).
  router.post('/v1/nacks', cors, guards.stream, guards.body, async (ctx) => {
    const { userId } = ctx.state;
    const { ids, reason } = validate(nackBody, ctx.request.body);
    ctx.body = { counted: await guards.storage.write(() => mailbox.nack(userId, ids, reason)) };
  });

  return router;
}
