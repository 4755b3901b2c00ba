import { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisClient } from './redis.js';

/** A Redis postbox must not run on, or must only run on after saying so. */
export class RedisSetupError extends Error {
  override name = 'RedisSetupError';
}

export interface RedisCheckOptions {
  /** NODE_ENV is production: volatile storage is refused rather than warned about. */
  production: boolean;
  /** ALLOW_VOLATILE_REDIS: accept a Redis that keeps nothing on disk. */
  allowVolatile: boolean;
  /** Whether postbox was told to use a Redis Cluster (REDIS_CLUSTER_NODES). */
  cluster: boolean;
}

/** What one Redis node says about itself: INFO server/persistence/cluster and CONFIG, where allowed. */
interface NodeFacts {
  clusterEnabled: boolean;
  appendonly: string | undefined;
  save: string | undefined;
  policy: string | undefined;
}

async function facts(node: RedisClient): Promise<NodeFacts> {
  const info = String(await node.info('cluster'));
  const clusterEnabled = /cluster_enabled:1/.test(info);
  const config = async (name: string) => {
    try {
      const reply = (await node.config('GET', name)) as string[];
      return reply[1];
    } catch {
      // Managed Redis services often disable CONFIG; nothing to check then.
      return undefined;
    }
  };
  const [appendonly, save, policy] = await Promise.all([config('appendonly'), config('save'), config('maxmemory-policy')]);
  return { clusterEnabled, appendonly, save, policy };
}

/**
 * Start-up checks of the Redis postbox is about to use:
 * - a cluster node reached without REDIS_CLUSTER_NODES is refused, with the setting to use;
 * - storage that keeps nothing on disk (`appendonly no` and no `save` points) loses every
 *   message on a restart: refused in production unless ALLOW_VOLATILE_REDIS=1, warned about
 *   otherwise;
 * - an eviction policy other than `noeviction` may drop queued messages and jobs: warned about.
 * On a cluster every master is checked.
 */
export async function checkRedis(redis: RedisClient, logger: Logger, options: RedisCheckOptions): Promise<void> {
  const nodes: RedisClient[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const all = await Promise.all(nodes.map(facts));
  if (!options.cluster && all.some((f) => f.clusterEnabled)) {
    throw new RedisSetupError(
      'REDIS_URL points at a Redis Cluster node (INFO cluster says cluster_enabled:1): ' +
        'set REDIS_CLUSTER_NODES=host:port,host:port,... to the cluster nodes instead',
    );
  }
  const volatile = all.some((f) => f.appendonly === 'no' && f.save === '');
  if (volatile) {
    const what =
      'Redis keeps nothing on disk (appendonly no, save ""): every message is lost when it restarts. ' +
      'Turn on appendonly yes (or save points)';
    if (options.production && !options.allowVolatile) {
      throw new RedisSetupError(`${what}, or set ALLOW_VOLATILE_REDIS=1 to run on it anyway`);
    }
    logger.warn({ appendonly: 'no', save: '' }, `${what}; postbox is not durable on it`);
  }
  const policies = [...new Set(all.map((f) => f.policy).filter((p): p is string => p !== undefined && p !== 'noeviction'))];
  if (policies.length > 0) {
    logger.warn(
      { policy: policies.join(',') },
      'Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queued messages ' +
        'and jobs; set maxmemory-policy noeviction',
    );
  }
}
