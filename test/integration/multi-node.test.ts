import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';

// Two nodes on one Redis, as behind a load balancer: one user's tabs land on different nodes.
let redis: TestRedis;
let one: TestApp;
let two: TestApp;
const readers: SseReader[] = [];

const settings = { KEY_PREFIX: 'multi', ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 10 };

beforeAll(async () => {
  redis = await startRedis();
  [one, two] = await Promise.all([startApp(redis.url, settings), startApp(redis.url, settings)]);
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled([one?.close(), two?.close()]);
  await redis?.stop();
});

async function tab(node: TestApp, userId: string): Promise<SseReader> {
  const token = await node.token(userId);
  const reader = await openSse(`${node.url}/v1/stream?token=${encodeURIComponent(token)}`);
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

const idsOf = (reader: SseReader) => reader.events.map((e) => e.id ?? '');
/** Ids in order of first arrival: what a client that drops repeats (as ours does) shows. */
const firstSeen = (reader: SseReader, skip: Set<string>) => [...new Set(idsOf(reader))].filter((id) => !skip.has(id));

/**
 * Waits until both tabs are known to both nodes: a first message (left unacked, so it
 * is delivered again if one node wrote it before it heard of the other) reaches both.
 * Returns its id, acked.
 */
async function warmUp(userId: string, a: SseReader, b: SseReader): Promise<string> {
  const id = await one.enqueue(userId, 'warm-up');
  await waitUntil(() => idsOf(a).includes(id) && idsOf(b).includes(id), 'the first message reached both tabs');
  await one.ack(await one.token(userId), [id]);
  return id;
}

async function peerFrames(node: TestApp, direction: 'sent' | 'received'): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`postbox_peer_frames_total{direction="${direction}"}`));
  expect(line, `metric line for ${direction}`).toBeDefined();
  return Number(line!.split(' ').at(-1));
}

describe('a user with tabs on several nodes', () => {
  it('a user whose tabs are all on one node causes no traffic between nodes', async () => {
    const a1 = await tab(one, 'solo');
    const a2 = await tab(one, 'solo');
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await (i % 2 === 0 ? one : two).enqueue('solo', { i }));
    await a1.waitFor(5, 10_000);
    await a2.waitFor(5, 10_000);
    expect(firstSeen(a1, new Set())).toEqual(ids);
    expect(firstSeen(a2, new Set())).toEqual(ids);
    await one.ack(await one.token('solo'), ids);
    for (const node of [one, two]) {
      expect(await peerFrames(node, 'sent')).toBe(0);
      expect(await peerFrames(node, 'received')).toBe(0);
    }
    a1.close();
    a2.close();
  });

  it('delivers every message to the tabs on both nodes, in order, with the same ids', async () => {
    const a = await tab(one, 'both');
    const b = await tab(two, 'both');
    const warm = await warmUp('both', a, b);
    const ids: string[] = [];
    // Through either node, as producers behind the same load balancer would.
    for (let i = 0; i < 12; i += 1) ids.push(await (i % 2 === 0 ? one : two).enqueue('both', { i }, { event: 'note' }));
    const skip = new Set([warm]);
    await waitUntil(() => firstSeen(a, skip).length >= 12 && firstSeen(b, skip).length >= 12, 'both tabs got 12');
    expect(firstSeen(a, skip)).toEqual(ids);
    expect(firstSeen(b, skip)).toEqual(ids);
    for (const reader of [a, b]) {
      const byId = new Map(reader.events.map((e) => [e.id, e]));
      expect(ids.map((id) => JSON.parse(byId.get(id)!.data))).toEqual(ids.map((_, i) => ({ i })));
      expect(new Set(ids.map((id) => byId.get(id)!.event))).toEqual(new Set(['note']));
    }
    await two.ack(await two.token('both'), ids);
    // One node popped and passed the messages to the other.
    const received = (await peerFrames(one, 'received')) + (await peerFrames(two, 'received'));
    expect(received).toBeGreaterThanOrEqual(12);
    a.close();
    b.close();
  });

  it('keeps one order on both tabs when messages arrive through both nodes at once', async () => {
    const a = await tab(one, 'burst');
    const b = await tab(two, 'burst');
    const skip = new Set([await warmUp('burst', a, b)]);
    const ids = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? one : two).enqueue('burst', { i })),
    );
    // Stream ids order the messages as the mailbox holds them: `<ms>-<seq>`.
    const key = (id: string) => id.split('-').map((part) => part.padStart(16, '0')).join('-');
    const expected = [...ids].sort((x, y) => (key(x) < key(y) ? -1 : 1));
    await waitUntil(() => firstSeen(a, skip).length >= 40 && firstSeen(b, skip).length >= 40, 'both tabs got 40');
    expect(firstSeen(a, skip)).toEqual(expected);
    expect(firstSeen(b, skip)).toEqual(expected);
    await one.ack(await one.token('burst'), ids);
    a.close();
    b.close();
  });

  it('redelivers an unacked message to both tabs, and one ack through either node stops it on both', async () => {
    const a = await tab(one, 'acker');
    const b = await tab(two, 'acker');
    await warmUp('acker', a, b);
    const count = (reader: SseReader, id: string) => idsOf(reader).filter((x) => x === id).length;

    const unacked = await one.enqueue('acker', 'no ack yet');
    await waitUntil(() => count(a, unacked) >= 2 && count(b, unacked) >= 2, 'both tabs got it twice');

    const acked = await two.enqueue('acker', 'ack me');
    await waitUntil(() => count(a, acked) >= 1 && count(b, acked) >= 1, 'both tabs got it');
    // The ack goes through node 2, from the tab on node 2; node 1 holds the other tab.
    const res = await two.ack(await two.token('acker'), [acked, unacked]);
    expect(await res.json()).toEqual({ acked: 2 });
    const seen = [count(a, acked), count(b, acked), count(a, unacked), count(b, unacked)];
    await sleep(2000); // more than two ack timeouts
    expect([count(a, acked), count(b, acked), count(a, unacked), count(b, unacked)]).toEqual(seen);
    const view = (await (await one.admin('/admin/queues/acker')).json()) as { waiting: number; inflight: number };
    expect(view).toMatchObject({ waiting: 0, inflight: 0 });
    a.close();
    b.close();
  });

  it('keeps delivering to the tab on node 1 after the tab on node 2 closes', async () => {
    const a = await tab(one, 'leaver');
    const b = await tab(two, 'leaver');
    const warm = await warmUp('leaver', a, b);
    const before = await two.enqueue('leaver', 'before');
    await waitUntil(() => idsOf(a).includes(before) && idsOf(b).includes(before), 'both tabs got it');
    await one.ack(await one.token('leaver'), [before]);

    b.close();
    await waitUntil(() => two.node.hub.count('leaver') === 0, 'node 2 saw its tab close');
    const after: string[] = [];
    for (let i = 0; i < 6; i += 1) after.push(await (i % 2 === 0 ? two : one).enqueue('leaver', { after: i }));
    const skip = new Set([warm, before]);
    await waitUntil(() => firstSeen(a, skip).length >= 6, 'the tab on node 1 got all 6');
    expect(firstSeen(a, skip)).toEqual(after);
    expect(b.events.map((e) => e.id)).not.toContain(after[0]);

    // And a tab opened again on node 2 gets what comes next.
    const b2 = await tab(two, 'leaver');
    const again = await warmUp('leaver', a, b2);
    expect(idsOf(b2)).toContain(again);
    a.close();
    b2.close();
  });

  it('keeps delivering to the tab on node 2 after the tab on node 1, which was draining the user, closes', async () => {
    // Node 1 had the user first, so it drains it and passes the messages to node 2.
    const a = await tab(one, 'handover');
    await sleep(100);
    const b = await tab(two, 'handover');
    const skip = new Set([await warmUp('handover', a, b)]);
    const before = await two.enqueue('handover', 'before');
    await waitUntil(() => idsOf(a).includes(before) && idsOf(b).includes(before), 'both tabs got it');
    await two.ack(await two.token('handover'), [before]);
    skip.add(before);

    a.close();
    await waitUntil(() => one.node.hub.count('handover') === 0, 'node 1 saw its tab close');
    const after: string[] = [];
    for (let i = 0; i < 6; i += 1) after.push(await (i % 2 === 0 ? one : two).enqueue('handover', { after: i }));
    await waitUntil(() => firstSeen(b, skip).length >= 6, 'the tab on node 2 got all 6');
    expect(firstSeen(b, skip)).toEqual(after);
    b.close();
  });
});
