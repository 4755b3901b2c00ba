import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { waitUntil } from '../helpers/wait-until.js';

// Three nodes on one Redis, as behind a load balancer: one user's tabs land on different nodes.
let redis: TestRedis;
let nodes: TestApp[];
const readers: SseReader[] = [];

const settings = { KEY_PREFIX: 'multi', ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 10 };

beforeAll(async () => {
  redis = await startRedis();
  nodes = await Promise.all([startApp(redis.url, settings), startApp(redis.url, settings), startApp(redis.url, settings)]);
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled(nodes.map((n) => n.close()));
  await redis?.stop();
});

const node = (i: number) => nodes[i % nodes.length] as TestApp;

async function tab(on: TestApp, userId: string): Promise<SseReader> {
  const reader = await openSse(on.streamUrl(await on.token(userId)));
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}


/** Message ids in order of first arrival, control events left out: what a client that drops repeats (as ours does) shows. */
const firstSeen = (reader: SseReader) => [
  ...new Set(reader.events.filter((e) => !e.event.startsWith('postbox.')).map((e) => e.id ?? '')),
];
const count = (reader: SseReader, id: string) => reader.events.filter((e) => e.id === id).length;
/** Stream ids order the messages as the mailbox holds them: `<ms>-<seq>`. */
const byStreamOrder = (ids: string[]) => {
  const key = (id: string) => id.split('-').map((part) => part.padStart(16, '0')).join('-');
  return [...ids].sort((x, y) => (key(x) < key(y) ? -1 : 1));
};

async function peerFrames(on: TestApp, direction: 'sent' | 'received'): Promise<number> {
  const text = await (await fetch(`${on.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`postbox_peer_frames_total{direction="${direction}"}`));
  expect(line, `metric line for ${direction}`).toBeDefined();
  return Number(line!.split(' ').at(-1));
}

describe('a user with tabs on several nodes', () => {
  it('a user whose tabs are all on one node causes no traffic between nodes', async () => {
    const a1 = await tab(node(0), 'solo');
    const a2 = await tab(node(0), 'solo');
    const ids: string[] = [];
    for (let i = 0; i < 6; i += 1) ids.push(await node(i).enqueue('solo', { i }));
    await waitUntil(() => firstSeen(a1).length >= 6 && firstSeen(a2).length >= 6, 'both tabs got 6');
    expect(firstSeen(a1)).toEqual(ids);
    expect(firstSeen(a2)).toEqual(ids);
    await node(0).ack(await node(0).token('solo'), ids);
    for (const n of nodes) {
      expect(await peerFrames(n, 'sent')).toBe(0);
      expect(await peerFrames(n, 'received')).toBe(0);
    }
  });

  it('never misses a message on a tab that opens on another node while messages flow (30 trials, no warm-up)', async () => {
    for (let trial = 0; trial < 30; trial += 1) {
      const userId = `race-${trial}`;
      const a = await tab(node(trial), userId);
      // The second tab opens and a message is enqueued at the same moment, through a third node.
      const [b, id] = await Promise.all([tab(node(trial + 1), userId), node(trial + 2).enqueue(userId, { trial })]);
      // The first tab acks as soon as it has the message, as fast as a page can, whatever the other tab has.
      await waitUntil(() => count(a, id) >= 1, `trial ${trial}: the first tab got the message`);
      await node(trial).ack(await node(trial).token(userId), [id]);
      await waitUntil(() => count(b, id) >= 1, `trial ${trial}: the second tab got it too`);
      const next = await node(trial + 2).enqueue(userId, { trial, next: true });
      await waitUntil(() => count(a, next) >= 1 && count(b, next) >= 1, `trial ${trial}: both tabs got the next one`);
      expect(firstSeen(a)).toEqual([id, next]);
      expect(firstSeen(b)).toEqual([id, next]);
      a.close();
      b.close();
    }
  });

  it('delivers every message to tabs on three nodes, in one order, with the same ids, however they are enqueued', async () => {
    const tabs = [await tab(node(0), 'three'), await tab(node(1), 'three'), await tab(node(2), 'three')];
    // Through every node at once, as producers behind the same load balancer would.
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => node(i).enqueue('three', { i }, { event: 'note' })));
    const expected = byStreamOrder(ids);
    await waitUntil(() => tabs.every((t) => firstSeen(t).length >= 40), 'every tab got 40');
    for (const t of tabs) {
      expect(firstSeen(t)).toEqual(expected);
      const byId = new Map(t.events.map((e) => [e.id, e]));
      expect(new Set(ids.map((id) => byId.get(id)!.event))).toEqual(new Set(['note']));
    }
    await node(1).ack(await node(1).token('three'), ids);
    // One node popped and passed the messages to the others.
    let received = 0;
    for (const n of nodes) received += await peerFrames(n, 'received');
    expect(received).toBeGreaterThanOrEqual(80);
  });

  it('redelivers an unacked message to every tab; one ack through any node stops it on all, and tells them', async () => {
    const tabs = [await tab(node(0), 'acker'), await tab(node(1), 'acker')];
    const token = await node(2).token('acker');
    const unacked = await node(0).enqueue('acker', 'no ack yet');
    // The page keeps acking others meanwhile, so the missed ack counts and is redelivered.
    await waitUntil(async () => {
      const other = await node(2).enqueue('acker', 'handled');
      await waitUntil(() => tabs.every((t) => count(t, other) >= 1), 'the other message arrived');
      await node(2).ack(token, [other]);
      return tabs.every((t) => count(t, unacked) >= 2);
    }, 'both tabs got it twice');

    // The ack goes through node 3, which holds no tab: both tabs hear of it.
    const res = await node(2).ack(token, [unacked]);
    expect(await res.json()).toEqual({ acked: 1 });
    await waitUntil(
      () => tabs.every((t) => t.events.some((e) => e.event === 'postbox.acked' && JSON.parse(e.data).ids.includes(unacked))),
      'both tabs were told it was acked',
    );
    const seen = tabs.map((t) => count(t, unacked));
    await sleep(2000); // more than two ack timeouts
    expect(tabs.map((t) => count(t, unacked))).toEqual(seen);
    const view = (await (await node(0).admin('/admin/queues/acker')).json()) as { waiting: number; inflight: number };
    expect(view).toMatchObject({ waiting: 0, inflight: 0 });
  });

  for (const closing of ['first', 'second'] as const) {
    it(`keeps delivering to the other tab when the ${closing} tab's node lets go, and to a tab that comes back there`, async () => {
      const userId = `leaver-${closing}`;
      const a = await tab(node(0), userId);
      const b = await tab(node(1), userId);
      const token = await node(2).token(userId);
      const first = await node(2).enqueue(userId, 'before');
      await waitUntil(() => count(a, first) >= 1 && count(b, first) >= 1, 'both tabs got it');
      await node(2).ack(token, [first]);

      const [leaving, staying, on] = closing === 'first' ? [a, b, node(0)] : [b, a, node(1)];
      leaving.close();
      await waitUntil(() => on.postbox.hub.count(userId) === 0, 'the node saw its tab close');
      const after: string[] = [];
      for (let i = 0; i < 6; i += 1) after.push(await node(i).enqueue(userId, { i }));
      await waitUntil(() => after.every((id) => count(staying, id) >= 1), 'the remaining tab got all 6');
      expect(firstSeen(staying)).toEqual([first, ...after]);
      expect(leaving.events.map((e) => e.id)).not.toContain(after[0]);
      await node(2).ack(token, after);

      // A tab opened again on that node gets what comes next, as the other one does.
      const again = await tab(on, userId);
      const next = await node(2).enqueue(userId, 'next');
      await waitUntil(() => count(again, next) >= 1 && count(staying, next) >= 1, 'both tabs got the next one');
      await node(2).ack(token, [next]);
    });
  }
});
