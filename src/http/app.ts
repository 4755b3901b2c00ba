import Koa from 'koa';
import type Router from '@koa/router';
import { accessLog } from './access-log.js';
import { adminRoutes } from './admin-routes.js';
import { adminUiRoutes } from './admin-ui.js';
import type { AppDeps } from './deps.js';
import { errorMiddleware } from './error-middleware.js';
import { healthRoutes } from './health-routes.js';
import { producerRoutes } from './producer-routes.js';
import { roomRoutes } from './room-routes.js';
import { scheduleRoutes } from './schedule-routes.js';
import { subscriberRoutes } from './subscriber-routes.js';

/**
 * Builds the Koa application from injected dependencies. `extraRoutes` lets
 * features mount their own routers without this file knowing them.
 */
export function createApp(deps: AppDeps, extraRoutes: Router[] = []): Koa {
  const app = new Koa({ proxy: false });
  app.silent = true;
  app.use(accessLog(deps.logger));
  app.use(errorMiddleware(deps.logger));
  for (const router of [
    healthRoutes(deps),
    producerRoutes(deps),
    subscriberRoutes(deps),
    adminRoutes(deps),
    scheduleRoutes(deps),
    roomRoutes(deps),
    adminUiRoutes(deps),
    ...extraRoutes,
  ]) {
    app.use(router.routes());
    app.use(router.allowedMethods({ throw: true }));
  }
  return app;
}
