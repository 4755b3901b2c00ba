import { isIPv6 } from 'node:net';
import type { Context, Next } from 'koa';
import type { Counter } from 'prom-client';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

/**
 * The two stream limits of a node, kept in this node's memory:
 * - open streams, all users together (MAX_STREAMS_PER_NODE): what it protects, sockets and
 *   memory, is the node's own, so only the node's own count matters;
 * - stream opens per client address per window (STREAM_OPENS_PER_ADDRESS): it must keep
 *   working when Redis is away (that is when every page reconnects at once) and must not add
 *   a Redis round trip to every open in a reconnect storm; a client spread over N nodes by the
 *   load balancer gets N times the limit, which still bounds it.
 */
export interface StreamLimits {
  /** Counts a request to the stream route against its address; 429 PB_ERR_STREAM_OPENS_LIMITED past the limit. */
  readonly opens: (ctx: Context, next: Next) => Promise<void>;
  /** Throws 429 PB_ERR_NODE_STREAMS_FULL when the node holds MAX_STREAMS_PER_NODE streams; else counts one until `closed`. */
  admit(): { closed: () => void };
  /** Streams open on this node. */
  readonly open: number;
}

/** An address as counted: IPv4 as is (also when mapped into IPv6), IPv6 by its /64, which one client usually holds whole. */
export function addressKey(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4) return v4[1] as string;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export function createStreamLimits(config: Config, limited: Counter<'limit'>): StreamLimits {
  let open = 0;
  const perAddress =
    config.STREAM_OPENS_PER_ADDRESS === 0
      ? undefined
      : new RateLimiterMemory({ points: config.STREAM_OPENS_PER_ADDRESS, duration: config.STREAM_OPENS_WINDOW_MS / 1000 });
  const retryAfter = String(Math.max(1, Math.ceil(config.RETRY_MS / 1000)));

  return {
    async opens(ctx, next) {
      if (perAddress !== undefined) {
        try {
          await perAddress.consume(addressKey(ctx.ip));
        } catch (err) {
          if (!(err instanceof RateLimiterRes)) throw err;
          limited.inc({ limit: 'address_opens' });
          throw new AppError(
            'PB_ERR_STREAM_OPENS_LIMITED',
            `this address opened ${config.STREAM_OPENS_PER_ADDRESS} streams within ${config.STREAM_OPENS_WINDOW_MS} ms`,
            { headers: { 'Retry-After': String(Math.max(1, Math.ceil(err.msBeforeNext / 1000))) } },
          );
        }
      }
      return next();
    },
    admit() {
      if (open >= config.MAX_STREAMS_PER_NODE) {
        limited.inc({ limit: 'node_streams' });
        throw new AppError('PB_ERR_NODE_STREAMS_FULL', `this node holds ${config.MAX_STREAMS_PER_NODE} open streams`, {
          headers: { 'Retry-After': retryAfter },
        });
      }
      open += 1;
      let done = false;
      return {
        closed: () => {
          if (done) return;
          done = true;
          open -= 1;
        },
      };
    },
    get open() {
      return open;
    },
  };
}
