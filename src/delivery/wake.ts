import type { Redis } from 'ioredis';

/**
 * Wakes: the one place that knows the wake channel. An enqueue (enqueue.lua,
 * given the name by `wakeChannel`) or an admin retry publishes the user id on
 * it, and the node holding that user's streams drains at once instead of at
 * its next tick.
 */
export interface Wake {
  /** Name of the channel the Lua scripts publish a user's wakes on. */
  channel(userId: string): string;
  /** Wakes the node holding this user's streams, wherever it is (one PUBLISH). */
  publish(userId: string): void;
  /** Starts listening; `onWake` gets the user id of every wake. */
  subscribe(onWake: (userId: string) => void): Promise<void>;
  close(): Promise<void>;
}

/** The wake channel's name for a key prefix (one channel; every node listens). */
export function wakeChannel(keyPrefix: string): (userId: string) => string {
  const name = `${keyPrefix}:wake`;
  return () => name;
}

export function createWake(deps: { redis: Redis; subscriber: Redis; keyPrefix: string }): Wake {
  const { redis, subscriber } = deps;
  const channel = wakeChannel(deps.keyPrefix);
  const name = channel('');
  let listener: ((ch: string, message: string) => void) | undefined;
  return {
    channel,
    publish(userId) {
      // Lost when Redis is away; the drain's tick covers it.
      redis.publish(channel(userId), userId).catch(() => undefined);
    },
    async subscribe(onWake) {
      listener = (ch, userId) => {
        if (ch === name) onWake(userId);
      };
      subscriber.on('message', listener);
      await subscriber.subscribe(name);
    },
    async close() {
      if (listener !== undefined) subscriber.off('message', listener);
      await subscriber.unsubscribe(name).catch(() => undefined);
    },
  };
}
