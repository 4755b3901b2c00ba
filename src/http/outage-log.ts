import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { RedisClient } from '../queue/redis.js';

/** How a request failed on Redis: nothing was sent (refused), or no reply came (unknown). */
export type StorageFailure = 'refused' | 'unknown';

/**
 * Requests failed by a Redis outage: one error line when it starts (with the first error), one
 * info line when Redis answers again (how long, how many requests failed), and a counter per
 * request in `/metrics` (`postbox_redis_errors_total{kind}`), instead of a stack per request.
 */
export interface OutageLog {
  failed(kind: StorageFailure, err: unknown, fields: Record<string, unknown>): void;
  /** Whether an outage is under way (its end not seen yet). */
  readonly ongoing: boolean;
}

/** While an outage lasts, Redis is asked this often whether it answers again, ms. */
const PROBE_MS = 1000;

export function createOutageLog(deps: { logger: Logger; redis: RedisClient; clock: Clock; registry: Registry }): OutageLog {
  const { logger, redis, clock } = deps;
  const counter = new Counter({
    name: 'postbox_redis_errors_total',
    help: 'Requests answered 503 because Redis was away: refused (nothing sent) or unknown (sent, no reply)',
    labelNames: ['kind'],
    registers: [deps.registry],
  });
  counter.inc({ kind: 'refused' }, 0);
  counter.inc({ kind: 'unknown' }, 0);
  let since: number | undefined;
  let count = { refused: 0, unknown: 0 };

  function probe(): void {
    const timer = clock.setTimeout(() => {
      // The node is closing: no end to report.
      if (redis.status === 'end') return;
      redis.ping().then(
        () => {
          if (since === undefined) return;
          logger.info({ outageMs: clock.now() - since, failedRequests: count }, 'storage available again');
          since = undefined;
          count = { refused: 0, unknown: 0 };
        },
        () => probe(),
      );
    }, PROBE_MS);
    timer.unref();
  }

  return {
    failed(kind, err, fields) {
      counter.inc({ kind });
      count[kind] += 1;
      if (since !== undefined) return;
      since = clock.now();
      logger.error({ err, kind, ...fields }, 'storage unavailable: requests answer 503 until Redis answers again');
      probe();
    },
    get ongoing() {
      return since !== undefined;
    },
  };
}
