import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

/**
 * The one place that says how postbox connects to Redis. Every connection
 * (commands, subscriptions, BullMQ's queues and workers) takes its options
 * from here.
 */
export interface RedisConnectionSettings {
  /** `redis://…`, `rediss://…` or a unix socket path. */
  url: string;
  /** A command without a reply after this long fails (the request answers 503), ms. @defaultValue 5000 */
  commandTimeoutMs?: number;
}

export type ConnectionRole =
  /** The request path: no offline queue and no retries, so a route fails at once while Redis is away. */
  | 'command'
  /** Pub/sub: queues its SUBSCRIBE while away and resubscribes after a reconnect. */
  | 'subscriber'
  /** BullMQ workers: commands wait for the reconnect (BullMQ requires `maxRetriesPerRequest: null`). */
  | 'worker';

const reconnect = (times: number) => Math.min(50 * times, 1000);

/** ioredis options for a connection of `role`. */
export function connectionOptions(settings: RedisConnectionSettings, role: ConnectionRole): RedisOptions {
  const common: RedisOptions = { connectTimeout: 2000, retryStrategy: reconnect, lazyConnect: true };
  switch (role) {
    case 'command':
      return {
        ...common,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: settings.commandTimeoutMs ?? 5000,
      };
    case 'subscriber':
    case 'worker':
      return { ...common, maxRetriesPerRequest: null };
  }
}

/** A new connection of `role`; call `connectRedis` (or let BullMQ connect it). */
export function createConnection(settings: RedisConnectionSettings, role: ConnectionRole): Redis {
  return new Redis(settings.url, connectionOptions(settings, role));
}

/**
 * BullMQ connection options: BullMQ hands `url` to ioredis, which takes a
 * unix socket path there too (the embedded Redis). BullMQ connects itself.
 */
export function bullConnection(settings: RedisConnectionSettings, role: 'command' | 'worker'): BullRedisOptions {
  const { lazyConnect: _lazy, ...options } = connectionOptions(settings, role);
  return { ...options, url: settings.url } as BullRedisOptions;
}

/** Waits until `redis` is ready, within `timeoutMs`. */
export async function connectRedis(redis: Redis, timeoutMs = 10_000): Promise<void> {
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
