import type { Logger } from 'pino';
import type { Config } from './config.js';
import {
  isListening,
  RedisServerMissingError,
  startEmbeddedRedis,
  type EmbeddedRedis,
} from './queue/embedded-redis.js';
import { RedisSetupError } from './queue/redis-checks.js';

/** The Redis a node will use, decided once at start-up by `chooseRedis`. */
export interface RedisChoice {
  /** What createPostbox connects to: a URL, a unix socket path, or `cluster`. */
  url: string;
  /** The private redis-server started (or adopted) for this process; stop it on exit. */
  embedded?: EmbeddedRedis;
  /** How the start-up check names it, and why it was taken when nobody named it. */
  report: { target?: string; fallback?: string };
}

export interface RedisChoiceOptions {
  /** The redis-server executable. @defaultValue 'redis-server', from PATH */
  command?: string;
  /**
   * Where to look for a Redis when REDIS_URL is unset and redis-server cannot be run, outside
   * production. @defaultValue 127.0.0.1:6379
   */
  fallback?: { host: string; port: number };
}

const INSTALL = 'install redis-server (apt-get install -y redis-server) for a private append-only one under DATA_DIR';

/**
 * Which Redis `npm start` uses:
 * - REDIS_CLUSTER_NODES: that cluster; REDIS_URL (a URL or a socket path): that Redis;
 * - REDIS_URL=embedded, or REDIS_URL unset with redis-server on PATH: a private redis-server
 *   with append-only persistence under DATA_DIR, so the default is durable and writes into
 *   nobody else's Redis;
 * - REDIS_URL unset and no redis-server: outside production, the Redis answering on
 *   127.0.0.1:6379 if any, reported as a warning by the start-up check (what it keeps on disk,
 *   where the keys go); in production, or with nothing there, a RedisSetupError saying what to set.
 */
export async function chooseRedis(
  config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER_NODES' | 'DATA_DIR' | 'NODE_ENV'>,
  logger: Logger,
  options: RedisChoiceOptions = {},
): Promise<RedisChoice> {
  if (config.REDIS_CLUSTER_NODES !== undefined) return { url: 'cluster', report: {} };
  const url = config.REDIS_URL;
  if (url !== undefined && url !== 'embedded') return { url, report: {} };

  const embedded = async (): Promise<RedisChoice> => {
    const started = await startEmbeddedRedis(config.DATA_DIR, logger, { command: options.command });
    return { url: started.url, embedded: started, report: { target: `the embedded redis-server at ${started.url}` } };
  };
  if (url === 'embedded') {
    try {
      return await embedded();
    } catch (err) {
      if (err instanceof RedisServerMissingError) throw new RedisSetupError(`REDIS_URL=embedded: ${err.message}`);
      throw err;
    }
  }
  try {
    return await embedded();
  } catch (err) {
    if (!(err instanceof RedisServerMissingError)) throw err;
    const why = `REDIS_URL is unset and ${err.message}`;
    if (config.NODE_ENV === 'production') {
      throw new RedisSetupError(`${why}: set REDIS_URL to the Redis to use, or ${INSTALL}`);
    }
    const { host, port } = options.fallback ?? { host: '127.0.0.1', port: 6379 };
    if (!(await isListening({ host, port }))) {
      throw new RedisSetupError(`${why}, and nothing answers on ${host}:${port}: set REDIS_URL, or ${INSTALL}`);
    }
    const target = `redis://${host}:${port}`;
    return { url: target, report: { target, fallback: why } };
  }
}
