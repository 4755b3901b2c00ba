import { AppError, isRedisUnavailable, STORAGE_RETRY_AFTER_SECONDS } from '../errors.js';
import type { RedisClient } from '../queue/redis.js';

/** Nothing of the request reached Redis: PB_ERR_REDIS_UNAVAILABLE, safe to retry as is. */
export const refused = (cause?: unknown) =>
  new AppError('PB_ERR_REDIS_UNAVAILABLE', undefined, {
    cause,
    headers: { 'Retry-After': String(STORAGE_RETRY_AFTER_SECONDS) },
  });

/** Sent with no reply: it may have been carried out. PB_ERR_OUTCOME_UNKNOWN; retry with the same key. */
export const outcomeUnknown = (cause?: unknown) =>
  new AppError('PB_ERR_OUTCOME_UNKNOWN', undefined, {
    cause,
    headers: { 'Retry-After': String(STORAGE_RETRY_AFTER_SECONDS) },
  });

/**
 * What a Redis failure means for the request that met it. A command is refused by ioredis
 * without being sent only while the connection is down (`enableOfflineQueue: false`); once sent,
 * a timeout or a lost connection says nothing of whether Redis ran it (a paused Redis runs it
 * when it resumes). One error cannot tell which command of a request failed, so the request
 * path decides: before anything is sent, or while only reading, a failure is "refused"; after
 * a write was sent, "outcome unknown".
 */
export interface Storage {
  /**
   * The writes of a request. Refused at once while the command connection is not ready (then
   * nothing is sent: ioredis writes commands at the end of this tick, before any I/O could bring
   * the connection back); a Redis failure after that is PB_ERR_OUTCOME_UNKNOWN.
   */
  write<T>(work: () => Promise<T>): Promise<T>;
  /** Reads, or the steps before any write: a Redis failure is PB_ERR_REDIS_UNAVAILABLE. */
  read<T>(work: () => Promise<T>): Promise<T>;
  /** Throws PB_ERR_REDIS_UNAVAILABLE unless the command connection is ready. */
  ready(): void;
}

export function createStorage(redis: RedisClient): Storage {
  const ready = () => {
    if (redis.status !== 'ready') throw refused(new Error(`Redis connection is ${redis.status}`));
  };
  return {
    ready,
    async write(work) {
      ready();
      try {
        return await work();
      } catch (err) {
        if (isRedisUnavailable(err)) throw outcomeUnknown(err);
        throw err;
      }
    },
    async read(work) {
      try {
        return await work();
      } catch (err) {
        if (isRedisUnavailable(err)) throw refused(err);
        throw err;
      }
    },
  };
}
