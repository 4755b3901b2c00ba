import type { ConnectionOptions as BullConnectionOptions } from 'bullmq';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A connection to one Redis or to a Redis Cluster; postbox's code works with either. */
export type RedisClient = Redis | Cluster;

/** One seed node of a Redis Cluster. */
export interface ClusterNode {
  host: string;
  port: number;
}

/**
 * The one place that says how postbox connects to Redis. Every connection
 * (commands, subscriptions, BullMQ's queues and workers) takes its options
 * from here.
 */
export interface RedisConnectionSettings {
  /** `redis://…`, `rediss://…` or a unix socket path; unused when `cluster` is set. */
  url: string;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES): with them, every connection is a Cluster client. */
  cluster?: ClusterNode[] | undefined;
  /** A command without a reply after this long fails (the request answers 503), ms. @defaultValue 5000 */
  commandTimeoutMs?: number | undefined;
}

export type ConnectionRole =
  /**
   * The request path: no offline queue and no retries, so a route fails at once while Redis is
   * away; auto-pipelining, so the commands of one event-loop turn leave in one write per node.
   */
  | 'command'
  /** Pub/sub (sharded): queues its SSUBSCRIBE while away and subscribes again after a reconnect. */
  | 'subscriber'
  /** BullMQ workers: commands wait for the reconnect (BullMQ requires `maxRetriesPerRequest: null`). */
  | 'worker';

const reconnect = (times: number) => Math.min(50 * times, 1000);

/** ioredis options of one connection (for a cluster: of each node connection) of `role`. */
export function connectionOptions(settings: RedisConnectionSettings, role: ConnectionRole): RedisOptions {
  const common: RedisOptions = { connectTimeout: 2000, retryStrategy: reconnect, lazyConnect: true };
  switch (role) {
    case 'command':
      return {
        ...common,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: settings.commandTimeoutMs ?? 5000,
        enableAutoPipelining: true,
      };
    case 'subscriber':
    case 'worker':
      return { ...common, maxRetriesPerRequest: null };
  }
}

function clusterOptions(settings: RedisConnectionSettings, role: ConnectionRole): ClusterOptions {
  const { lazyConnect: _lazy, enableAutoPipelining, enableOfflineQueue, ...redisOptions } = connectionOptions(settings, role);
  return {
    lazyConnect: true,
    redisOptions,
    enableOfflineQueue: enableOfflineQueue ?? true,
    enableAutoPipelining: enableAutoPipelining ?? false,
    // SSUBSCRIBE goes to the node owning the channel's slot, so a user's wakes reach only the nodes holding them.
    shardedSubscribers: role === 'subscriber',
    clusterRetryStrategy: reconnect,
    // A node that drops stays in the pool and is reconnected to, as a single Redis is. Without
    // this ioredis forgets it and sends its slots' commands to any other node, whose MOVED back
    // to it can reach the route as a 500 (an auto-pipeline holding several slots is not redirected).
    clusterNodeRetryStrategy: reconnect,
    // MOVED/ASK during a resharding are followed; a command that keeps failing is that request's 503.
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    slotsRefreshTimeout: 2000,
  };
}

const isNoScript = (err: unknown) => err instanceof Error && err.message.startsWith('NOSCRIPT');

/**
 * Every script defined on `client` from now on (postbox's, the rate limiter's) is sent again as
 * a plain EVAL when its EVALSHA answers NOSCRIPT.
 *
 * ioredis sends a script as EVAL on a connection's first use and as EVALSHA after, counting it
 * as loaded once its EVAL is written, even when the node refuses it unrun (CLUSTERDOWN from a
 * Redis Cluster master in its first seconds after a restart, its scripts gone). It retries a
 * NOSCRIPT itself, but through the command's first promise, which a cluster pipeline sent again
 * (after CLUSTERDOWN or a lost connection) replaces (ioredis 5.11): through auto-pipelining the
 * NOSCRIPT then reached the route as a 500. NOSCRIPT means the script did not run; the EVAL
 * runs it and loads it on that node.
 */
function evalOnNoScript(client: RedisClient): RedisClient {
  type Send = (this: unknown, ...args: unknown[]) => Promise<unknown>;
  const commands = client as unknown as Record<string, Send>;
  const evaluate = client.eval.bind(client) as (...args: unknown[]) => Promise<unknown>;
  const define = client.defineCommand.bind(client);
  client.defineCommand = (name, definition) => {
    define(name, definition);
    const send = commands[name]!;
    // EVAL script numkeys key… arg…; without numberOfKeys the caller passes numkeys first.
    const head = definition.numberOfKeys === undefined ? [definition.lua] : [definition.lua, definition.numberOfKeys];
    commands[name] = function (...args) {
      // ioredis copies the command onto its pipelines (auto-pipelining makes them): there it only queues.
      if (this !== client || typeof args[args.length - 1] === 'function') return send.apply(this, args);
      return send.apply(client, args).catch((err: unknown) => (isNoScript(err) ? evaluate(...head, ...args) : Promise.reject(err)));
    };
  };
  return client;
}

/** A new connection of `role`; call `connectRedis` (or let BullMQ connect it). */
export function createConnection(settings: RedisConnectionSettings, role: ConnectionRole): RedisClient {
  if (settings.cluster !== undefined) return evalOnNoScript(new Cluster(settings.cluster, clusterOptions(settings, role)));
  return evalOnNoScript(new Redis(settings.url, connectionOptions(settings, role)));
}

/**
 * The `connection` of a BullMQ Queue (`command`: fail-fast, for the request
 * path) or Worker. On one Redis these are options and BullMQ owns the
 * connection; on a cluster a Cluster client, which the caller must close.
 */
export function bullConnection(settings: RedisConnectionSettings, role: 'command' | 'worker'): BullConnectionOptions {
  const { lazyConnect: _lazy, enableAutoPipelining: _auto, ...options } = connectionOptions(settings, role);
  if (settings.cluster !== undefined) {
    const { lazyConnect: _l, enableAutoPipelining: _a, ...cluster } = clusterOptions(settings, role);
    return new Cluster(settings.cluster, { ...cluster, redisOptions: options, enableAutoPipelining: false });
  }
  return { ...options, url: settings.url } as BullConnectionOptions;
}

/** Waits until `redis` is ready, within `timeoutMs`. */
export async function connectRedis(redis: RedisClient, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  if (redis.status === 'wait') await redis.connect().catch(() => undefined);
  if ((redis.status as string) === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis not ready within ${timeoutMs} ms (status ${redis.status})`));
    }, timeoutMs);
    function onReady() {
      clearTimeout(timer);
      resolve();
    }
    redis.once('ready', onReady);
  });
}

/** `host:port,host:port` (REDIS_CLUSTER_NODES) as seed nodes. */
export function parseClusterNodes(text: string): ClusterNode[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => {
      const colon = part.lastIndexOf(':');
      const host = part.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      return { host, port: Number(part.slice(colon + 1)) };
    });
}
