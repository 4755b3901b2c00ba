import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/**
 * Listens on the wake channel: an enqueue or an ack on any node publishes the
 * user id, and the node holding that user's stream drains at once.
 */
export async function subscribeWakes(
  subscriber: Redis,
  channel: string,
  onWake: (userId: string) => void,
  logger: Logger,
): Promise<void> {
  subscriber.on('message', (ch: string, userId: string) => {
    if (ch === channel) onWake(userId);
  });
  subscriber.on('error', (err: Error) => logger.debug({ err }, 'wake subscriber error'));
  await subscriber.subscribe(channel);
}
