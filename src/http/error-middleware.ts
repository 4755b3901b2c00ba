import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { AppError, errorCatalogue, isRedisUnavailable } from '../errors.js';
import type { OutageLog } from './outage-log.js';
import { outcomeUnknown, refused } from './storage.js';

/** Methods that change nothing: a Redis failure under them cannot have stored anything. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Maps every thrown error to `{"error": {"code", "message", "details"?}}`. 5xx details go to
 * the log only: a bug is logged each time with its stack; a Redis outage once, by `outage`
 * (without it, each time too).
 */
export function errorMiddleware(logger: Logger, outage?: OutageLog) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new AppError('PB_ERR_NOT_FOUND');
      }
    } catch (caught) {
      const err = toAppError(caught, ctx.method);
      const where = { method: ctx.method, path: ctx.path };
      if (outage !== undefined && (err.code === 'PB_ERR_REDIS_UNAVAILABLE' || err.code === 'PB_ERR_OUTCOME_UNKNOWN')) {
        outage.failed(err.code === 'PB_ERR_REDIS_UNAVAILABLE' ? 'refused' : 'unknown', loggable(err.cause ?? caught), where);
      } else if (err.code === 'PB_ERR_SHUTTING_DOWN') {
        logger.debug(where, err.message);
      } else if (err.status >= 500) {
        logger.error({ err: loggable(caught), ...where }, err.message);
      }
      if (ctx.headerSent || ctx.respond === false) return;
      ctx.status = err.status;
      ctx.set(err.headers);
      const message = err.expose ? err.message : errorCatalogue[err.code].message;
      const body: Record<string, unknown> = { code: err.code, message };
      if (err.details !== undefined) body.details = err.details;
      ctx.body = { error: body };
    }
  };
}

/**
 * An error as it may be logged: ioredis attaches the failed command with its arguments
 * (`err.command.args`: a message's data, an idempotency key) to its errors; the log keeps the
 * command's name and how many arguments it had, never their values. Causes are cleaned too.
 */
export function loggable(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error) || depth > 4) return err;
  const command = (err as { command?: { name?: unknown; args?: unknown } }).command;
  const cause = (err as { cause?: unknown }).cause;
  if (command === undefined && (cause === undefined || cause === loggable(cause, depth + 1))) return err;
  const copy = new Error(err.message, cause === undefined ? undefined : { cause: loggable(cause, depth + 1) });
  copy.name = err.name;
  copy.stack = err.stack;
  for (const [key, value] of Object.entries(err)) {
    if (key !== 'command' && key !== 'cause') (copy as unknown as Record<string, unknown>)[key] = value;
  }
  if (command !== undefined) {
    const args = Array.isArray(command.args) ? command.args.length : 0;
    (copy as unknown as Record<string, unknown>).command = { name: command.name, args };
  }
  return copy;
}

function toAppError(err: unknown, method: string): AppError {
  if (err instanceof AppError) return err;
  // A route that did not say which it was: a failed read stored nothing; anything else may have.
  if (isRedisUnavailable(err)) return SAFE_METHODS.has(method) ? refused(err) : outcomeUnknown(err);
  const status = (err as { status?: number }).status;
  if (status === 405 || status === 501) return new AppError('PB_ERR_METHOD_NOT_ALLOWED', undefined, { cause: err });
  if (status === 404) return new AppError('PB_ERR_NOT_FOUND', undefined, { cause: err });
  return new AppError('PB_ERR_INTERNAL', undefined, { cause: err });
}
