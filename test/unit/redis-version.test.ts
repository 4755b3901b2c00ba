import { describe, expect, it } from 'vitest';
import { RedisSetupError, refuseOldRedis } from '../../src/queue/redis-checks.js';

// The start-up check reads redis_version from every master (src/queue/redis-checks.ts); only
// Redis 7 is on this machine, so the decision is tested on the versions themselves.
describe('the Redis version check', () => {
  it('refuses a Redis older than 7.0, naming the version and why', () => {
    expect(() => refuseOldRedis(['7.2.4', '6.2.14'])).toThrow(RedisSetupError);
    expect(() => refuseOldRedis(['6.2.14'])).toThrow(/Redis 6\.2\.14 is too old: postbox needs Redis 7\.0 or newer \(it delivers through sharded pub\/sub/);
  });

  it('accepts 7.0 and newer, and a version it cannot read', () => {
    expect(() => refuseOldRedis(['7.0.0', '7.0.15', '8.0.1', undefined])).not.toThrow();
  });
});
