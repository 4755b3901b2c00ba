import Koa from 'koa';
import Router from '@koa/router';
import { accessLog } from './access-log.js';
import { adminRoutes } from './admin-routes.js';
import { adminUiRoutes } from './admin-ui.js';
import type { AppDeps } from './deps.js';
import { errorMiddleware } from './error-middleware.js';
import { createGuards, type Guards } from './guards.js';
import { healthRoutes } from './health-routes.js';
import { createOutageLog } from './outage-log.js';
import { producerRoutes } from './producer-routes.js';
import { pushRoutes } from './push-routes.js';
import { roomRoutes } from './room-routes.js';
import { scheduleRoutes } from './schedule-routes.js';
import { statusRoutes } from './status-routes.js';
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
  // Only when it logs: the level is fixed at start-up, and this runs on every request.
  if (deps.logger.isLevelEnabled('debug')) app.use(accessLog(deps.logger));
  const outage = createOutageLog({ logger: deps.logger, redis: deps.redis, clock: deps.clock, registry: deps.metrics.registry });
  app.use(errorMiddleware(deps.logger, outage));
  const guards = createGuards(deps);
  const routers: Router[] = [
    healthRoutes(deps),
    producerRoutes(deps, guards),
    subscriberRoutes(deps, guards) as unknown as Router,
    pushRoutes(deps, guards) as unknown as Router,
    adminRoutes(deps, guards),
    scheduleRoutes(deps, guards),
    roomRoutes(deps, guards),
    statusRoutes(deps, guards) as unknown as Router,
    adminUiRoutes(deps, guards),
    ...extraRoutes.map((routes) => routes(guards)),
  ];
  // One router holding every route: a request is matched once, not once per feature's router.
  const root = new Router();
  for (const router of routers) {
    root.stack.push(...router.stack);
    for (const method of router.methods) if (!root.methods.includes(method)) root.methods.push(method);
  }
  app.use(root.routes());
  app.use(root.allowedMethods({ throw: true }));
  return app;
}
