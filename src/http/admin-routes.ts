import Router from '@koa/router';
import { AppError } from '../errors.js';
import { requireKey } from './auth.js';
import type { AppDeps } from './deps.js';
import { validate } from './body.js';
import { userId as userIdSchema } from './schemas.js';

/** Admin routes: inspect a user's queue. */
export function adminRoutes(deps: AppDeps): Router {
  const { config, mailbox, hub, tokens } = deps;
  const router = new Router();
  const auth = requireKey('admin', { apiKey: config.API_KEY, adminKey: config.ADMIN_KEY }, tokens);

  router.get('/admin/queues/:userId', auth, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const view = await mailbox.inspect(userId);
    if (view === undefined) throw new AppError('PB_ERR_USER_NOT_FOUND', `user ${userId} has no queue`);
    ctx.body = { ...view, connections: hub.count(userId) };
  });

  return router;
}
