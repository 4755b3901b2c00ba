import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';

// rate-limiter-flexible's RateLimiterRedis on an ioredis Cluster: each call is one script on
// one key (the bucket), which a cluster routes to the key's slot.
let cluster: TestCluster;
let nodes: TestApp[];

beforeAll(async () => {
  cluster = await startCluster();
  const overrides = {
    REDIS_CLUSTER_NODES: cluster.seeds,
    RATE_LIMIT_USER_PER_SECOND: 0.1,
    RATE_LIMIT_USER_BURST: 2,
    RATE_LIMIT_KEY_PER_SECOND: 0.1,
    RATE_LIMIT_KEY_BURST: 1000,
  };
  nodes = await Promise.all([startApp('redis://127.0.0.1:1', overrides), startApp('redis://127.0.0.1:1', overrides)]);
});
afterAll(async () => {
  await Promise.allSettled((nodes ?? []).map((n) => n.close()));
  await cluster?.stop();
});

describe('producer rate limits on a Redis Cluster', () => {
  it("keeps each user's bucket in the slot of their mailbox, shared by both nodes, for users on every shard", async () => {
    const [a, b] = nodes as [TestApp, TestApp];
    const users = cluster.usersOnEveryShard(1, 'limited');
    const started = Date.now();
    for (const user of users) {
      await a.enqueue(user, 1);
      await b.enqueue(user, 2);
      const refused = await a.produce(`/v1/users/${user}/messages`, { data: 3 });
      expect(`${user} ${refused.status}`).toBe(`${user} 429`);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_USER_RATE_LIMITED');
      const key = `pb:rl:user:{${user}}`;
      expect(cluster.nodeForKey(key).index).toBe(cluster.nodeForKey(`pb:{${user}}:m`).index);
      expect(await cluster.client().exists(key)).toBe(1);
    }
    // The key's bucket (one key, one slot) counted the stored messages of both nodes; what the
    // refused ones took was given back. It refills at 0.1/s, so by at most a tenth of the seconds elapsed.
    const hash = createHash('sha256').update(nodes[0]!.config.API_KEY).digest('base64url').slice(0, 16);
    const found = [`pb:rl:key:${hash}`];
    const deadline = Date.now() + 10_000;
    let tokens: number;
    let refill: number;
    // The refunds are sent after the answer: wait for them.
    do {
      tokens = Number(await cluster.client().hget(found[0]!, 't'));
      refill = (Date.now() - started) / 10_000;
    } while (tokens < 1000 - users.length * 2 && Date.now() < deadline);
    expect(tokens).toBeGreaterThanOrEqual(1000 - users.length * 2);
    expect(tokens).toBeLessThanOrEqual(Math.min(1000, 1000 - users.length * 2 + refill + 1));
  });
});
