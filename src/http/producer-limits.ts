import { createHash } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Counter } from 'prom-client';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import { AppError, isRedisUnavailable, STORAGE_RETRY_AFTER_SECONDS, type ErrorCode } from '../errors.js';
import type { RedisClient } from '../queue/redis.js';

/**
 * A token bucket in rate-limiter-flexible's script contract (its `customIncrTtlLuaScript`):
 * KEYS[1] the bucket, a hash {t = tokens left, at = when they were counted, ms};
 * ARGV[1] tokens to take (negative: give back), ARGV[2] unused (whole seconds of ARGV[4]),
 * ARGV[3] capacity (the burst), ARGV[4] seconds to refill from empty (capacity / rate).
 * Returns {consumed, ms}: consumed = capacity - tokens left, or capacity + cost when refused
 * (nothing is taken then); ms = until the bucket is full, or until `cost` tokens are there.
 * One key per call, so it is legal on a Redis Cluster; TIME is Redis's clock, one for all nodes.
 */
const TOKEN_BUCKET = `
if redis.replicate_commands then redis.replicate_commands() end
local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[3])
local perMs = capacity / (tonumber(ARGV[4]) * 1000)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(bucket[1])
local at = tonumber(bucket[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * perMs)
if tokens < cost then
  return {capacity + cost, math.ceil((cost - tokens) / perMs)}
end
tokens = math.min(capacity, tokens - cost)
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
-- A bucket left alone refills; once full it is the same as no key at all.
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / perMs) + 1000)
return {math.floor(capacity - tokens), math.ceil((capacity - tokens) / perMs)}
`;

/** Which producer limit refused a request, as `/metrics` labels it. */
export type ProducerLimit = 'key' | 'user';

export interface ProducerLimits {
  /**
   * Takes `messages` tokens of the API key's bucket (RATE_LIMIT_KEY_*) and, for each user, the
   * number of messages for them from theirs (RATE_LIMIT_USER_*). A bucket short of tokens is a
   * 429 (PB_ERR_KEY_RATE_LIMITED or PB_ERR_USER_RATE_LIMITED, with Retry-After) and what was
   * taken is given back; Redis away is PB_ERR_REDIS_UNAVAILABLE: nothing else was sent.
   */
  take(messages: number, perUser: Map<string, number>): Promise<void>;
  /** Guard of the producer routes that do not enqueue: one token of the API key's bucket. */
  readonly perCall: (ctx: Context, next: Next) => Promise<void>;
}

interface Bucket {
  limiter: RateLimiterRedis;
  capacity: number;
  code: ErrorCode;
  limit: ProducerLimit;
}

function bucket(redis: RedisClient, keyPrefix: string, rate: number, capacity: number, code: ErrorCode, limit: ProducerLimit) {
  if (rate === 0) return undefined;
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points: capacity,
    // Seconds to fill an empty bucket; the script refills continuously at capacity / duration.
    duration: capacity / rate,
    customIncrTtlLuaScript: TOKEN_BUCKET,
    // The connection is fail-fast: while it is down, refuse at once instead of queueing.
    rejectIfRedisNotReady: true,
  });
  return { limiter, capacity, code, limit } satisfies Bucket;
}

/**
 * Producer rate limits, shared by every node through Redis: one bucket for the API key, one
 * per user. Keys `<KEY_PREFIX>:rl:key:<hash of the key>` and `<KEY_PREFIX>:rl:user:{<userId>}`.
 */
export function createProducerLimits(deps: { redis: RedisClient; config: Config; limited: Counter<'limit'> }): ProducerLimits {
  const { redis, config, limited } = deps;
  const apiKey = createHash('sha256').update(config.API_KEY).digest('base64url').slice(0, 16);
  const key = bucket(
    redis,
    `${config.KEY_PREFIX}:rl:key`,
    config.RATE_LIMIT_KEY_PER_SECOND,
    config.RATE_LIMIT_KEY_BURST,
    'PB_ERR_KEY_RATE_LIMITED',
    'key',
  );
  const user = bucket(
    redis,
    `${config.KEY_PREFIX}:rl:user`,
    config.RATE_LIMIT_USER_PER_SECOND,
    config.RATE_LIMIT_USER_BURST,
    'PB_ERR_USER_RATE_LIMITED',
    'user',
  );

  async function take(messages: number, perUser: Map<string, number>): Promise<void> {
    const wanted: Array<{ bucket: Bucket; id: string; cost: number }> = [];
    if (key) wanted.push({ bucket: key, id: apiKey, cost: messages });
    // The user's hash tag: on a cluster their bucket sits in the slot of their mailbox.
    if (user) for (const [userId, cost] of perUser) wanted.push({ bucket: user, id: `{${userId}}`, cost });
    for (const w of wanted) {
      if (w.cost > w.bucket.capacity) {
        // No wait would ever let it through: not a 429.
        const name = w.bucket.limit === 'key' ? 'RATE_LIMIT_KEY_BURST' : 'RATE_LIMIT_USER_BURST';
        const what = w.bucket.limit === 'key' ? 'messages' : `messages for user ${w.id.slice(1, -1)}`;
        throw new AppError('PB_ERR_VALIDATION', `the request holds ${w.cost} ${what}; ${name} is ${w.bucket.capacity}`);
      }
    }
    const outcomes = await Promise.allSettled(wanted.map((w) => w.bucket.limiter.consume(w.id, w.cost)));
    const refused = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [{ reason: o.reason as unknown, w: wanted[i] as (typeof wanted)[number] }] : []));
    if (refused.length === 0) return;
    // Give back what was taken for a request that is not carried out (best effort).
    outcomes.forEach((o, i) => {
      const w = wanted[i];
      if (o.status === 'fulfilled' && w) w.bucket.limiter.reward(w.id, w.cost).catch(() => undefined);
    });
    const failure = refused.find((r) => !(r.reason instanceof RateLimiterRes));
    if (failure) {
      if (isRedisUnavailable(failure.reason)) {
        throw new AppError('PB_ERR_REDIS_UNAVAILABLE', undefined, {
          cause: failure.reason,
          headers: { 'Retry-After': String(STORAGE_RETRY_AFTER_SECONDS) },
        });
      }
      throw failure.reason;
    }
    const first = refused.find((r) => r.w.bucket.limit === 'key') ?? (refused[0] as (typeof refused)[number]);
    const waitMs = Math.max(...refused.map((r) => (r.reason as RateLimiterRes).msBeforeNext));
    limited.inc({ limit: first.w.bucket.limit });
    const message =
      first.w.bucket.limit === 'key'
        ? `the API key is over ${config.RATE_LIMIT_KEY_PER_SECOND} messages per second (burst ${config.RATE_LIMIT_KEY_BURST})`
        : `messages for user ${first.w.id.slice(1, -1)} are over ${config.RATE_LIMIT_USER_PER_SECOND} per second (burst ${config.RATE_LIMIT_USER_BURST})`;
    throw new AppError(first.w.bucket.code, message, {
      headers: { 'Retry-After': String(Math.max(1, Math.ceil(waitMs / 1000))) },
      details: refused.map((r) => ({ limit: r.w.bucket.limit, ...(r.w.bucket.limit === 'user' ? { userId: r.w.id.slice(1, -1) } : {}) })),
    });
  }

  return {
    take,
    perCall: async (_ctx, next) => {
      await take(1, new Map());
      return next();
    },
  };
}
