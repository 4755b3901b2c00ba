import Router from '@koa/router';
import type { AppDeps } from './deps.js';

/** Liveness, readiness (Redis answers) and Prometheus metrics; no auth. */
export function healthRoutes(deps: AppDeps): Router {
  const { redis, metrics } = deps;
  const router = new Router();

  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });

  router.get('/readyz', async (ctx) => {
    const ready = !deps.isClosing() && redis.status === 'ready' && (await ping(redis));
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'unavailable', redis: redis.status };
  });

  router.get('/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });

  return router;
}

async function ping(redis: AppDeps['redis']): Promise<boolean> {
  try {
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  }
}
