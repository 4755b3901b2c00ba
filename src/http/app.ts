import Koa from 'koa';
import type Router from '@koa/router';
import { accessLog } from './access-log.js';
import { adminRoutes } from './admin-routes.js';
import { adminUiRoutes } from './admin-ui.js';
import type { AppDeps } from './deps.js';
import { errorMiddleware } from './error-middleware.js';
import { createGuards, type Guards } from './guards.js';
import { healthRoutes } from './health-routes.js';
import { createOutageLog } from './outage-log.js';
import { producerRoutes } from './producer-routes.js';
import { roomRoutes } from './room-routes.js';
import { scheduleRoutes } from './schedule-routes.js';
import { subscriberRoutes } from './subscriber-routes.js';

/** A router of a feature mounted beside the built-in ones (the client, the demo), given the shared guards. */
export type ExtraRoutes = (guards: Guards) => Router;

/**
 * Builds the Koa application from injected dependencies. `extraRoutes` lets
 * features mount their own routers without this file knowing them.
 */
export function createApp(deps: AppDeps, extraRoutes: ExtraRoutes[] = []): Koa {
  // Behind TRUST_PROXY_HOPS proxies, the client's address is that many X-Forwarded-For entries
  // from the right (the ones the proxies appended); the leftmost ones are whatever the client sent.
  const hops = deps.config.TRUST_PROXY_HOPS;
  const app = new Koa({ proxy: hops > 0, maxIpsCount: hops });
  app.silent = true;
  app.use(accessLog(deps.logger));
  const outage = createOutageLog({ logger: deps.logger, redis: deps.redis, clock: deps.clock, registry: deps.metrics.registry });
  app.use(errorMiddleware(deps.logger, outage));
  const guards = createGuards(deps);
  const routers: Router[] = [
    healthRoutes(deps),
    producerRoutes(deps, guards),
    subscriberRoutes(deps, guards) as unknown as Router,
    adminRoutes(deps, guards),
    scheduleRoutes(deps, guards),
    roomRoutes(deps, guards),
    adminUiRoutes(deps, guards),
    ...extraRoutes.map((routes) => routes(guards)),
  ];
  for (const router of routers) {
    app.use(router.routes());
    app.use(router.allowedMethods({ throw: true }));
  }
  return app;
}
