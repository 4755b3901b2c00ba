import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAckingPage, type AckingPage } from '../helpers/acking-page.js';
import { failUntilDead } from '../helpers/dead-letters.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';
import { waitUntil } from '../helpers/wait-until.js';

// postbox on a 3-master Redis Cluster, with users on every shard.
let cluster: TestCluster;
let nodes: TestApp[];
let users: string[];
const readers: SseReader[] = [];

const settings = { ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 2, JOB_LOCK_MS: 1000 };

beforeAll(async () => {
  cluster = await startCluster();
  const overrides = { ...settings, REDIS_CLUSTER_NODES: cluster.seeds };
  // REDIS_CLUSTER_NODES wins over the URL, which names no server at all.
  nodes = await Promise.all([startApp('redis://127.0.0.1:1', overrides), startApp('redis://127.0.0.1:1', overrides)]);
  users = cluster.usersOnEveryShard(2, 'shard-user');
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled((nodes ?? []).map((n) => n.close()));
  await cluster?.stop();
});

const app = () => nodes[0] as TestApp;

async function tab(on: TestApp, userId: string): Promise<SseReader> {
  const reader = await openSse(on.streamUrl(await on.token(userId)));
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}


const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));
const view = async (userId: string, on = app()) =>
  (await (await on.admin(`/admin/queues/${userId}`)).json()) as {
    waiting: number;
    inflight: number;
    dead: number;
    scheduled: number;
    deadLetters: Array<{ id: string; reason: string }>;
  };

describe('on a Redis Cluster', () => {
  it('spreads the users over all three masters', () => {
    const shards = new Set(users.map((u) => cluster.nodeForKey(`pb:{${u}}:m`).port));
    expect(shards.size).toBe(3);
  });

  it('enqueues, delivers and acks for users on every shard, one and batched', async () => {
    const streams = await Promise.all(users.map((u) => tab(app(), u)));
    const single = await Promise.all(users.map((u) => app().enqueue(u, { to: u })));
    const batch = await app().produce('/v1/messages', { messages: users.map((userId) => ({ userId, data: { batch: userId } })) });
    expect(batch.status).toBe(201);
    const batched = ((await batch.json()) as { ids: string[] }).ids;
    await waitUntil(() => streams.every((s) => messages(s).length >= 2), 'every user got both');
    for (const [i, s] of streams.entries()) {
      expect(messages(s).map((e) => e.id)).toEqual([single[i], batched[i]]);
      expect(JSON.parse(messages(s)[0]!.data)).toEqual({ to: users[i] });
      const res = await app().ack(await app().token(users[i]!), [single[i]!, batched[i]!]);
      expect(await res.json()).toEqual({ acked: 2 });
    }
    for (const u of users) expect(await view(u)).toMatchObject({ waiting: 0, inflight: 0 });
    for (const s of streams) s.close();
  });

  it('keeps idempotency keys, TTLs and dead letters per user on every shard', async () => {
    for (const u of users) {
      const first = await app().produce(`/v1/users/${u}/messages`, { data: 1, key: 'same' });
      const again = await app().produce(`/v1/users/${u}/messages`, { data: 2, key: 'same' });
      expect(again.status).toBe(200);
      expect(((await again.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
    }
    const expiring = users[0]!;
    await app().enqueue(expiring, 'gone soon', { ttlMs: 50 });
    await sleep(100);
    const late = await tab(app(), expiring);
    await waitUntil(() => messages(late).length >= 1, 'the keyed message arrives');
    await sleep(200);
    expect(messages(late).map((e) => e.data)).toEqual(['1']);
    late.close();
    await waitUntil(async () => app().postbox.hub.count(expiring) === 0, 'the stream closed');
    await failUntilDead(app(), users[1]!, 1);
    await failUntilDead(app(), users[5]!, 1);
    expect((await view(users[5]!)).deadLetters[0]).toMatchObject({ reason: 'max-deliveries' });
  });

  it('lists, counts and repairs queues on every shard from any node', async () => {
    for (const [i, u] of users.entries()) for (let n = 0; n <= i; n += 1) await app().enqueue(u, { backlog: n });
    const page = (await (await nodes[1]!.admin('/admin/queues?sort=backlog&limit=100')).json()) as {
      queues: Array<{ userId: string; waiting: number }>;
    };
    const listed = new Map(page.queues.map((q) => [q.userId, q.waiting]));
    for (const u of users) expect(listed.has(u)).toBe(true);
    const stats = (await (await nodes[1]!.admin('/admin/stats')).json()) as { totals: { users: number; waiting: number } };
    expect(stats.totals.users).toBeGreaterThanOrEqual(users.length);
    // Retry the dead letters made above, then purge a user on another shard.
    const retried = await nodes[1]!.admin(`/admin/queues/${users[5]}/dead/retry`, { method: 'POST' });
    expect(((await retried.json()) as { retried: number }).retried).toBe(1);
    const purged = await nodes[1]!.admin(`/admin/queues/${users[3]}`, { method: 'DELETE' });
    expect(purged.status).toBe(200);
    expect(await view(users[3]!)).toMatchObject({ waiting: 0, inflight: 0, dead: 0 });
  });

  it('fans a room message out to members on every shard, and runs scheduled messages', async () => {
    const room = 'everyone';
    expect((await app().produce(`/v1/rooms/${room}/members`, { userIds: users })).status).toBe(200);
    // Pages that ack: earlier tests left these users messages, and a stream that acks nothing is
    // closed at its ack timeout (600 ms here), which a slow fan-out could come after.
    const pages = await Promise.all(users.map(async (u) => openAckingPage(nodes[1]!.url, await nodes[1]!.token(u))));
    try {
      const sent = await app().produce(`/v1/rooms/${room}/messages`, { event: 'room', data: { hello: room } });
      expect(sent.status).toBe(202);
      const later = await app().produce(`/v1/users/${users[2]}/messages`, { event: 'later', data: 'due', delayMs: 200 });
      expect(later.status).toBe(202);
      const got = (page: AckingPage, data: string) => [...page.seen.values()].includes(data);
      await waitUntil(() => pages.every((p) => got(p, JSON.stringify({ hello: room }))), 'every member got the room message');
      await waitUntil(() => got(pages[2]!, JSON.stringify('due')), 'the scheduled message arrived');
    } finally {
      await Promise.all(pages.map((p) => p.stop()));
    }
  });

  it('never misses a message on a second tab opening on the other node (20 trials, users on every shard)', async () => {
    for (let trial = 0; trial < 20; trial += 1) {
      const userId = `${users[trial % users.length]}-t${trial}`;
      const a = await tab(nodes[trial % 2]!, userId);
      const [b, id] = await Promise.all([tab(nodes[(trial + 1) % 2]!, userId), app().enqueue(userId, { trial })]);
      await waitUntil(() => messages(a).some((e) => e.id === id), `trial ${trial}: the first tab got it`);
      await nodes[trial % 2]!.ack(await app().token(userId), [id]);
      await waitUntil(() => messages(b).some((e) => e.id === id), `trial ${trial}: the second tab got it too`);
      a.close();
      b.close();
    }
  });

  it('refuses to start on a cluster node named by REDIS_URL, saying to set REDIS_CLUSTER_NODES', async () => {
    const [first] = cluster.nodes;
    await expect(startApp(`redis://${first!.host}:${first!.port}`, settings)).rejects.toThrow(
      /Redis Cluster node.*set REDIS_CLUSTER_NODES/,
    );
  });
});
