import Koa from 'koa';
import type Router from '@koa/router';
import { accessLog } from './access-log.js';
import { adminRoutes } from './admin-routes.js';
import { adminUiRoutes } from './admin-ui.js';
import type { AppDeps } from './deps.js';
import { errorMiddleware } from './error-middleware.js';
import { createGuards, type Guards } from './guards.js';
import { healthRoutes } from './health-routes.js';
import { producerRoutes } from './producer-routes.js';
import { pushRoutes } from './push-routes.js';
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
  const app = new Koa({ proxy: false });
  app.silent = true;
  app.use(accessLog(deps.logger));
  app.use(errorMiddleware(deps.logger));
  const guards = createGuards(deps.config, deps.tokens, deps.push?.credentials);
  const routers: Router[] = [
    healthRoutes(deps),
    producerRoutes(deps, guards),
    subscriberRoutes(deps, guards) as unknown as Router,
    pushRoutes(deps, guards) as unknown as Router,
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
