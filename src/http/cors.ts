import type { Context, Next } from 'koa';

/**
 * CORS for the subscriber routes, so a page on the application's origin can
 * use a postbox on another origin: EventSource makes a simple GET, acks are a
 * POST with Authorization and JSON, so they are preflighted.
 */
export function subscriberCors(corsOrigins: string) {
  const any = corsOrigins === '*';
  const allowed = new Set(any ? [] : corsOrigins.split(',').map((o) => o.trim()));
  return async (ctx: Context, next: Next): Promise<void> => {
    const origin = ctx.get('origin');
    if (origin !== '' && (any || allowed.has(origin))) {
      ctx.set('Access-Control-Allow-Origin', any ? '*' : origin);
      if (!any) ctx.vary('Origin');
      if (ctx.method === 'OPTIONS') {
        ctx.set('Access-Control-Allow-Methods', 'GET, POST, DELETE');
        ctx.set('Access-Control-Allow-Headers', 'Authorization, Content-Type, Last-Event-ID');
        ctx.set('Access-Control-Max-Age', '600');
      }
    }
    // A preflight is answered here; without the headers above the browser refuses the request.
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204;
      return;
    }
    await next();
  };
}
