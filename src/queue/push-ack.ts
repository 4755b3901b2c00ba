import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { GROUP, type Keys } from './keys.js';
import { outboxCounter, receiptKeys, receiptSpec } from './receipts.js';
import type { RedisClient } from './redis.js';
import { withScripts } from './scripts.js';

/** Acks one message through its push's credential: `acked` holds its id when it was still there. */
export type PushAck = (userId: string, id: string) => Promise<{ acked: string[]; wake: boolean }>;

/**
 * The ack of a notification (src/queue/lua/push-ack.lua): it clears the message whether it was
 * in flight on a stream or still waiting, since a push usually reaches a user whose page never
 * had the message. Counted in `acked` like every other ack, and, as every other ack, it leaves
 * the message's receipt and its `message.acked` webhook event.
 */
export function createPushAck(deps: {
  redis: RedisClient;
  keys: Keys;
  clock: Clock;
  metrics: Metrics;
  options: {
    nodeId: string;
    maxInflight: number;
    userChannel: (userId: string) => string;
    /** What the scripts record of messages that are done (src/queue/receipts.ts `receiptSpec`). @defaultValue none */
    receiptSpec?: string;
    /** The script may have added `events` webhook events to the user's outbox (src/queue/webhook-outbox.ts). */
    onOutbox?: (userId: string, events: number) => void;
  };
}): PushAck {
  const redis = withScripts(deps.redis);
  const { keys, clock, metrics, options } = deps;
  const spec = options.receiptSpec ?? receiptSpec(undefined);
  const outboxEvents = outboxCounter(spec);
  return async (userId, id) => {
    const [acked, wake] = await redis.pbPushAck(
      keys.mailbox(userId),
      keys.counted(userId),
      keys.registry(userId),
      options.userChannel(userId),
      ...receiptKeys(keys, userId),
      GROUP,
      id,
      options.nodeId,
      options.maxInflight,
      clock.now(),
      spec,
    );
    if (acked === 1) metrics.acked.inc();
    if (outboxEvents.acked(acked) > 0) options.onOutbox?.(userId, acked);
    return { acked: acked === 1 ? [id] : [], wake: wake === 1 };
  };
}
