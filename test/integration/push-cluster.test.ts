import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finishedCheck } from '../helpers/push-jobs.js';
import { startPushService, type TestPushService } from '../helpers/push-service.js';
import { openSse } from '../helpers/read-sse.js';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';
import { startPushApp, type PushTestApp } from '../helpers/start-push-app.js';

// Web Push on a 3-master Redis Cluster: every key of a user's push (subscriptions, the mailbox
// push-due.lua and push-ack.lua read, the registry) shares the user's hash tag, so each script
// runs on one shard; users sit on every shard; two nodes share the work.
let cluster: TestCluster;
let push: TestPushService;
let nodes: PushTestApp[];
/** One user per shard for each test. */
let users: string[];
let others: string[];

beforeAll(async () => {
  cluster = await startCluster();
  push = await startPushService();
  const overrides = { REDIS_CLUSTER_NODES: cluster.seeds, PUSH_AFTER_MS: 100, DRAIN_INTERVAL_MS: 50 };
  nodes = await Promise.all([
    startPushApp('redis://127.0.0.1:1', { ca: push.ca, overrides }),
    startPushApp('redis://127.0.0.1:1', { ca: push.ca, overrides }),
  ]);
  const all = cluster.usersOnEveryShard(2, 'push-shard');
  const shard = (u: string) => cluster.nodeForKey(`pb:{${u}}:push`).port;
  users = all.filter((u, i) => all.findIndex((v) => shard(v) === shard(u)) === i);
  others = all.filter((u) => !users.includes(u));
});
afterAll(async () => {
  await Promise.allSettled((nodes ?? []).map((n) => n.close()));
  await push?.close();
  await cluster?.stop();
});

describe('Web Push on a Redis Cluster', () => {
  it('pushes to users on every shard, and each push’s credential acks its message there', async () => {
    const [a, b] = nodes as [PushTestApp, PushTestApp];
    expect(new Set(users.map((u) => cluster.nodeForKey(`pb:{${u}}:push`).port)).size).toBe(3);
    const sent = await Promise.all(
      users.map(async (userId, i) => {
        const subscription = push.subscribe();
        await (i % 2 ? a : b).subscribedUser(userId, subscription);
        const id = await (i % 2 ? b : a).enqueue(userId, { to: userId }, { push: { title: userId } });
        return { userId, id, subscription };
      }),
    );
    for (const { userId, id, subscription } of sent) {
      const got = await push.waitFor((all) => all.some((r) => r.subscriptionId === push.idOf(subscription) && r.status === 201));
      const payload = JSON.parse(got.find((r) => r.subscriptionId === push.idOf(subscription))!.payload!) as { id: string; ack: string };
      expect(payload.id).toBe(id);
      expect(await finishedCheck(a, userId, id)).toMatchObject({ result: 'pushed', sent: 1 });
      const res = await fetch(`${b.url}/v1/acks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${payload.ack}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ids: [id] }),
      });
      expect(await res.json()).toEqual({ acked: 1 });
    }
  });

  it('pushes nothing for a message acked over a stream, whichever node runs the check', async () => {
    const [a, b] = nodes as [PushTestApp, PushTestApp];
    expect(new Set(others.map((u) => cluster.nodeForKey(`pb:{${u}}:push`).port)).size).toBe(3);
    for (const userId of others) {
      const subscription = push.subscribe();
      const token = await a.subscribedUser(userId, subscription);
      const reader = await openSse(b.streamUrl(token));
      const id = await a.enqueue(userId, 'read it', { push: { title: 'read it' } });
      await reader.waitFor(1, 10_000);
      expect(await (await b.ack(token, [id])).json()).toEqual({ acked: 1 });
      reader.close();
      expect(await finishedCheck(a, userId, id, { promote: true })).toEqual({ result: 'gone' });
      expect(push.received.filter((r) => r.subscriptionId === push.idOf(subscription))).toEqual([]);
    }
  });
});
