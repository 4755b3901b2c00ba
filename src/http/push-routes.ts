import Router from '@koa/router';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { validate } from './body.js';
import { subscriberCors } from './cors.js';
import type { AppDeps, PushDeps } from './deps.js';
import type { Guards, StreamState } from './guards.js';
import { pushSubscriptionBody } from './schemas.js';

const endpointQuery = z.object({ endpoint: z.string().min(1).max(2048) });

/**
 * Web Push for the browser: the VAPID public key to subscribe with, and the user's push
 * subscriptions (stream token; the user comes from it). A subscription is checked before it is
 * stored and never fetched: its endpoint must be https on port 443 of a host with public
 * addresses only (src/workers/push-endpoint.ts), or the answer is 400 and nothing is kept.
 */
export function pushRoutes(deps: AppDeps, guards: Guards): Router<StreamState> {
  const { config } = deps;
  const router = new Router<StreamState>();
  const cors = subscriberCors(config.CORS_ORIGINS);
  router.options(['/v1/push/public-key', '/v1/push/subscriptions'], cors);

  function push(): PushDeps {
    if (deps.push === undefined) throw new AppError('PB_ERR_PUSH_DISABLED');
    return deps.push;
  }

  router.get('/v1/push/public-key', cors, (ctx) => {
    // The applicationServerKey of PushManager.subscribe() (W3C Push API; RFC 8292 §3.2).
    ctx.body = { publicKey: push().publicKey };
  });

  router.post('/v1/push/subscriptions', cors, guards.stream, guards.body, async (ctx) => {
    const p = push();
    const { endpoint, keys } = validate(pushSubscriptionBody, ctx.request.body);
    try {
      await p.checkEndpoint(endpoint);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new AppError('PB_ERR_PUSH_ENDPOINT_REFUSED', `push endpoint refused: ${reason}`, {
        cause: err,
        details: [{ path: 'endpoint', message: reason }],
      });
    }
    const stored = await p.subscriptions.add(ctx.state.userId, { endpoint, p256dh: keys.p256dh, auth: keys.auth });
    ctx.status = stored.created ? 201 : 200;
    ctx.body = { id: stored.id, replaced: stored.replaced };
  });

  router.get('/v1/push/subscriptions', cors, guards.stream, async (ctx) => {
    const list = await push().subscriptions.list(ctx.state.userId);
    // No keys: the page has its own subscription, and nothing else needs them.
    ctx.body = { subscriptions: list.map((s) => ({ id: s.id, endpoint: s.endpoint, subscribedAt: new Date(s.at).toISOString() })) };
  });

  // DELETE with the endpoint in the query: bodies of DELETE requests are not parsed.
  router.delete('/v1/push/subscriptions', cors, guards.stream, async (ctx) => {
    const { endpoint } = validate(endpointQuery, ctx.query);
    if (!(await push().subscriptions.remove(ctx.state.userId, endpoint))) {
      throw new AppError('PB_ERR_PUSH_SUBSCRIPTION_NOT_FOUND');
    }
    ctx.status = 204;
  });

  return router;
}
