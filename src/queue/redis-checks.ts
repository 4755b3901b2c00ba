import { Cluster, type Redis } from 'ioredis';
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
  /** KEY_PREFIX, named in the report: where postbox's keys go. */
  keyPrefix: string;
  /** What the Redis is, for the report (a URL without its password, a socket, "embedded ..."). */
  target: string;
  /**
   * Set when nobody named this Redis (REDIS_URL unset, redis-server missing) and postbox took
   * the one it found: why. The report is then a warning naming what that Redis keeps on disk
   * and where postbox's keys go in it. @defaultValue none: the Redis was configured
   */
  fallback?: string | undefined;
}

/** What one Redis node says about itself: INFO server/persistence/cluster and CONFIG, where allowed. */
export interface NodeFacts {
  address: string;
  version: string | undefined;
  clusterEnabled: boolean;
  /** `yes` / `no`; from CONFIG, else from INFO persistence (`aof_enabled`). */
  appendonly: string | undefined;
  appendfsync: string | undefined;
  /** RDB save points (`""`: none); undefined when CONFIG is disabled. */
  save: string | undefined;
  policy: string | undefined;
  /** Whether CONFIG GET answered (managed services often disable it). */
  config: boolean;
}

function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

function addressOf(node: RedisClient): string {
  const { path, host, port } = (node as Redis).options;
  return path ? String(path) : `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

async function facts(node: RedisClient): Promise<NodeFacts> {
  const info = String(await node.info());
  const config = async (name: string) => {
    try {
      const reply = (await node.config('GET', name)) as string[];
      return reply[1];
    } catch {
      // Managed Redis services often disable CONFIG; INFO says less, but something.
      return undefined;
    }
  };
  const [appendonly, appendfsync, save, policy] = await Promise.all(
    ['appendonly', 'appendfsync', 'save', 'maxmemory-policy'].map(config),
  );
  const aof = infoField(info, 'aof_enabled');
  return {
    address: addressOf(node),
    version: infoField(info, 'redis_version'),
    clusterEnabled: infoField(info, 'cluster_enabled') === '1',
    appendonly: appendonly ?? (aof === undefined ? undefined : aof === '1' ? 'yes' : 'no'),
    appendfsync,
    save,
    policy: policy ?? infoField(info, 'maxmemory_policy'),
    config: appendonly !== undefined,
  };
}

/** How much of what Redis acknowledged survives its restart, in a few words. */
export function durabilityOf(f: NodeFacts): string {
  if (f.appendonly === 'yes') {
    return f.appendfsync === 'always'
      ? 'append-only, fsync on every write: survives a restart and a machine crash'
      : `append-only (appendfsync ${f.appendfsync ?? 'unknown'}): survives a restart; a machine crash may lose the last second`;
  }
  if (f.save !== undefined && f.save !== '') {
    return `snapshots only (save "${f.save}"): a restart loses what came after the last snapshot`;
  }
  if (f.appendonly === 'no' && f.save === '') return 'nothing on disk (appendonly no, save ""): a restart loses every message';
  return 'unknown (CONFIG is disabled): check its persistence yourself';
}

/** Sharded pub/sub (SSUBSCRIBE, SPUBLISH) came with Redis 7.0. */
const MIN_REDIS_MAJOR = 7;

/** Throws when a node's `redis_version` is older than 7.0; an unknown version passes (INFO may be renamed). */
export function refuseOldRedis(versions: ReadonlyArray<string | undefined>): void {
  const old = versions.filter((v): v is string => v !== undefined && Number(v.split('.')[0]) < MIN_REDIS_MAJOR);
  if (old.length > 0) {
    throw new RedisSetupError(
      `Redis ${old.join(', ')} is too old: postbox needs Redis ${MIN_REDIS_MAJOR}.0 or newer ` +
        '(it delivers through sharded pub/sub, SSUBSCRIBE and SPUBLISH)',
    );
  }
}

/**
 * Start-up checks of the Redis postbox is about to use, and a report of what was checked
 * (version, persistence, eviction policy, where the keys go), logged once:
 * - a Redis older than 7.0 is refused: delivery uses sharded pub/sub (SSUBSCRIBE, SPUBLISH);
 * - a cluster node reached without REDIS_CLUSTER_NODES is refused, with the setting to use;
 * - storage that keeps nothing on disk (`appendonly no` and no `save` points) loses every
 *   message on a restart: refused in production unless ALLOW_VOLATILE_REDIS=1, warned about
 *   otherwise;
 * - an eviction policy other than `noeviction` may drop queued messages and jobs: warned about;
 * - a Redis nobody named (`fallback`) is reported as a warning.
 * On a cluster every master is checked. Returns the facts of each node.
 */
export async function checkRedis(redis: RedisClient, logger: Logger, options: RedisCheckOptions): Promise<NodeFacts[]> {
  const nodes: RedisClient[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const all = await Promise.all(nodes.map(facts));
  refuseOldRedis(all.map((f) => f.version));
  if (!options.cluster && all.some((f) => f.clusterEnabled)) {
    throw new RedisSetupError(
      'REDIS_URL points at a Redis Cluster node (INFO cluster says cluster_enabled:1): ' +
        'set REDIS_CLUSTER_NODES=host:port,host:port,... to the cluster nodes instead',
    );
  }
  const prefix = options.keyPrefix;
  const db = redis instanceof Cluster ? 0 : (redis.options.db ?? 0);
  const keys = `db ${db}, keys ${prefix}:{<user>}:*, ${prefix}:* and {${prefix}}:bull:* (KEY_PREFIX=${prefix})`;
  // Under one key: the messages say it all in words, and the pretty development log leaves it out.
  const report = {
    target: options.target,
    nodes: all.map((f) => ({
      address: f.address,
      version: f.version,
      appendonly: f.appendonly,
      appendfsync: f.appendfsync,
      save: f.save,
      maxmemoryPolicy: f.policy,
      durability: durabilityOf(f),
    })),
    db,
    keyPrefix: prefix,
  };
  const durability = [...new Set(all.map(durabilityOf))].join('; ');
  if (options.fallback !== undefined) {
    logger.warn(
      { redis: report },
      `${options.fallback}, so postbox uses the Redis it found at ${options.target}, which nobody configured for it. ` +
        `Its storage: ${durability}. postbox writes into its ${keys}, beside whatever else uses that Redis. ` +
        'Set REDIS_URL to use it on purpose, or install redis-server for a private append-only one under DATA_DIR',
    );
  } else {
    logger.info({ redis: report }, `Redis checked: ${options.target}, ${durability}; ${keys}`);
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
  return all;
}

/** A Redis URL as it may be logged: without its password. */
export function redactRedisUrl(url: string): string {
  if (!/^rediss?:\/\//.test(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
