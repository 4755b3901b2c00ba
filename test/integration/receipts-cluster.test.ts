import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { statusOf, type StatusBody } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';
import { startWebhookReceiver, type TestWebhookReceiver } from '../helpers/webhook-receiver.js';

// Receipts, status and webhooks on a 3-master Redis Cluster, with users on every shard: every
// script touches only its user's slot (the outbox included), and batch status goes to every shard.
interface Event {
  id: string;
  type: string;
  data: { userId: string; id: string; state: string };
}

const secret = `whsec_${randomBytes(24).toString('base64')}`;
let cluster: TestCluster;
let receiver: TestWebhookReceiver;
let nodes: TestApp[];
let users: string[];
/** Other users on every shard, who are never connected. */
let away: string[];
const readers: SseReader[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  receiver = await startWebhookReceiver({ secret });
  const overrides = {
    REDIS_CLUSTER_NODES: cluster.seeds,
    // Long: nothing here waits for a redelivery, and a loaded machine must not cause one.
    ACK_TIMEOUT_MS: 30_000,
    DRAIN_INTERVAL_MS: 50,
    HOUSEKEEPING_INTERVAL_MS: 300,
    JOB_LOCK_MS: 1000,
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET: secret,
    WEBHOOK_BACKOFF_MS: 100,
  };
  nodes = await Promise.all([startApp('redis://127.0.0.1:1', overrides), startApp('redis://127.0.0.1:1', overrides)]);
  users = cluster.usersOnEveryShard(2, 'receipt-user');
  away = cluster.usersOnEveryShard(2, 'away-user');
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled((nodes ?? []).map((n) => n.close()));
  await receiver?.close();
  await cluster?.stop();
});

const node = (i: number) => nodes[i % nodes.length] as TestApp;
const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));
const events = () =>
  receiver.received.filter((d) => d.valid && d.status === 200).flatMap((d) => (d.body as { events: Event[] }).events);

describe('receipts and webhooks on a Redis Cluster', () => {
  it('spreads the users over all three masters', () => {
    expect(new Set(users.map((u) => cluster.nodeForKey(`pb:{${u}}:rc`).port)).size).toBe(3);
    expect(new Set(away.map((u) => cluster.nodeForKey(`pb:{${u}}:wh`).port)).size).toBe(3);
  });

  it('answers status, one and in a batch, and sends the webhooks, for users on every shard', async () => {
    const sent = new Map<string, string[]>();
    for (const u of users) sent.set(u, [await node(0).enqueue(u, 'acked'), await node(1).enqueue(u, 'left in flight')]);
    const tabs = await Promise.all(
      users.map(async (u, i) => {
        const reader = await openSse(node(i).streamUrl(await node(i).token(u)));
        readers.push(reader);
        return reader;
      }),
    );
    await waitUntil(() => tabs.every((t) => messages(t).length === 2), 'every user has both');
    for (const [i, u] of users.entries()) {
      const [acked] = sent.get(u) as string[];
      const res = await node(i + 1).ack(await node(i + 1).token(u), [acked as string]);
      expect(await res.json()).toEqual({ acked: 1 });
    }

    for (const [i, u] of users.entries()) {
      const [acked, inflight] = sent.get(u) as string[];
      expect(await statusOf(node(i), u, acked as string)).toMatchObject({ state: 'acked', deliveries: 1, attempts: 1 });
      expect(await statusOf(node(i + 1), u, inflight as string)).toMatchObject({ state: 'inflight', attempts: 1 });
    }
    const pairs = users.flatMap((userId) => (sent.get(userId) as string[]).map((id) => ({ userId, id })));
    const res = await node(1).produce('/v1/messages/status', { messages: pairs });
    const body = (await res.json()) as { messages: Array<StatusBody & { userId: string }> };
    expect(body.messages.map((m) => [m.userId, m.id, m.state])).toEqual(
      pairs.map((p, i) => [p.userId, p.id, i % 2 === 0 ? 'acked' : 'inflight']),
    );

    await waitUntil(() => users.every((u) => events().some((e) => e.data.userId === u)), 'an event for every user');
    for (const u of users) {
      const [acked] = sent.get(u) as string[];
      expect(events().filter((e) => e.data.userId === u)).toEqual([
        expect.objectContaining({ id: `${u}/${acked}/message.acked`, type: 'message.acked' }),
      ]);
    }
    expect(receiver.received.every((d) => d.valid)).toBe(true);
    for (const t of tabs) t.close();
  });

  it('expires, notes and reports messages of users on every shard', async () => {
    const brief = new Map<string, string>();
    for (const u of away) brief.set(u, await node(0).enqueue(u, 'brief', { ttlMs: 100 }));
    // Housekeeping (one node of the two, each period) sweeps every shard.
    await waitUntil(
      () => away.every((u) => events().some((e) => e.type === 'message.expired' && e.data.userId === u && e.data.id === brief.get(u))),
      'message.expired for every user',
    );
    for (const u of away) {
      expect(await statusOf(node(1), u, brief.get(u) as string)).toMatchObject({ state: 'expired', attempts: 0 });
      const token = await node(1).token(u);
      const counts = await fetch(`${node(1).url}/v1/me/counts`, { headers: { authorization: `Bearer ${token}` } });
      expect(await counts.json()).toEqual({ waiting: 0, inflight: 0 });
      const tab = await openSse(`${node(1).streamUrl(token)}&notices=1`);
      readers.push(tab);
      await tab.waitFor(2);
      expect(tab.events.map((e) => e.event)).toEqual(['postbox.counts', 'postbox.expired']);
      expect(JSON.parse(tab.events[1]?.data ?? '')).toEqual({ count: 1, ids: [brief.get(u)] });
      tab.close();
    }
  });
});
