import type { Logger } from 'pino';
import type { RedisClient } from './redis.js';

/**
 * BullMQ loses jobs if Redis evicts keys under memory pressure; the mailboxes
 * too. Warns at start-up when `maxmemory-policy` is not `noeviction`.
 */
export async function warnOnEviction(redis: RedisClient, logger: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    if (policy !== undefined && policy !== 'noeviction') {
      logger.warn(
        { policy },
        'Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queued messages ' +
          'and jobs; set maxmemory-policy noeviction',
      );
    }
  } catch (err) {
    // Managed Redis services often disable CONFIG; nothing to check then.
    logger.debug({ err }, 'could not read maxmemory-policy');
  }
}
