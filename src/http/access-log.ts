import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

/**
 * One debug line per request: method, path, status, time. The query string is
 * left out, since a browser's stream token travels there. A stream is logged
 * when it opens (its response lasts as long as the connection).
 */
export function accessLog(logger: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (!logger.isLevelEnabled('debug')) return next();
    const started = performance.now();
    try {
      await next();
    } finally {
      logger.debug(
        {
          method: ctx.method,
          path: ctx.path,
          status: ctx.respond === false ? ctx.res.statusCode : ctx.status,
          ms: Math.round((performance.now() - started) * 10) / 10,
        },
        'request',
      );
    }
  };
}
