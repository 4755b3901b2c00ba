import type { Metrics } from '../metrics/metrics.js';
import { GROUP, type Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { withScripts } from './scripts.js';

/** Acks one message through its push's credential: `acked` holds its id when it was still there. */
export type PushAck = (userId: string, id: string) => Promise<{ acked: string[]; wake: boolean }>;

/**
 * The ack of a notification (src/queue/lua/push-ack.lua): it clears the message whether it was
 * in flight on a stream or still waiting, since a push usually reaches a user whose page never
 * had the message. Counted in `acked` like every other ack.
 */
export function createPushAck(deps: {
  redis: RedisClient;
  keys: Keys;
  metrics: Metrics;
  options: { nodeId: string; maxInflight: number; userChannel: (userId: string) => string };
}): PushAck {
  const redis = withScripts(deps.redis);
  const { keys, metrics, options } = deps;
  return async (userId, id) => {
    const [acked, wake] = await redis.pbPushAck(
      keys.mailbox(userId),
      keys.counted(userId),
      keys.registry(userId),
      options.userChannel(userId),
      GROUP,
      id,
      options.nodeId,
      options.maxInflight,
    );
    if (acked === 1) metrics.acked.inc();
    return { acked: acked === 1 ? [id] : [], wake: wake === 1 };
  };
}
