import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { AppError, isRedisUnavailable } from '../errors.js';

/** Maps every thrown error to `{"error": {"code", "message"}}`; 5xx details go to the log only. */
export function errorMiddleware(logger: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new AppError('PB_ERR_NOT_FOUND');
      }
    } catch (caught) {
      const err = toAppError(caught);
      if (err.status >= 500) {
        logger.error({ err: caught, method: ctx.method, path: ctx.path }, err.message);
      }
      if (ctx.headerSent || ctx.respond === false) return;
      ctx.status = err.status;
      ctx.set(err.headers);
      const body: Record<string, unknown> = { code: err.code, message: err.message };
      if (err.expose && err.details !== undefined) body.details = err.details;
      ctx.body = { error: body };
    }
  };
}

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (isRedisUnavailable(err)) return new AppError('PB_ERR_REDIS_UNAVAILABLE', undefined, { cause: err });
  const status = (err as { status?: number }).status;
  if (status === 405 || status === 501) return new AppError('PB_ERR_METHOD_NOT_ALLOWED', undefined, { cause: err });
  if (status === 404) return new AppError('PB_ERR_NOT_FOUND', undefined, { cause: err });
  return new AppError('PB_ERR_INTERNAL', undefined, { cause: err });
}
