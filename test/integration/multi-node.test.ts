import { describe, expect, it } from 'vitest';
import { timesSeen, waitPastAckTimeout } from '../helpers/past-ack-timeout.js';
import type { SseReader } from '../helpers/read-sse.js';
import type { TestApp } from '../helpers/start-app.js';
import { useNodes } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

// Two nodes on one Redis, as behind a load balancer: one user's tabs land on different nodes.
const nodes = useNodes(2, { KEY_PREFIX: 'multi', ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 10 });
/** Node 1 and node 2. */
const apps = (): [TestApp, TestApp] => [nodes[0]!.app, nodes[1]!.app];

async function tab(node: TestApp, userId: string): Promise<SseReader> {
  const reader = await node.openStream(userId);
  expect(reader.status).toBe(200);
  return reader;
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
  const [one] = apps();
  const id = await one.enqueue(userId, 'warm-up');
  await waitUntil(() => idsOf(a).includes(id) && idsOf(b).includes(id), 'the first message reached both tabs');
  await one.ack(await one.token(userId), [id]);
  return id;
}

async function peerFrames(node: TestApp, direction: 'sent' | 'received'): Promise<number> {
  const value = await node.metric(`postbox_peer_frames_total{direction="${direction}"}`);
  expect(value, `metric line for ${direction}`).toBeDefined();
  return value!;
}

describe('a user with tabs on several nodes', () => {
  it('a user whose tabs are all on one node causes no traffic between nodes', async () => {
    const [one, two] = apps();
    const a1 = await tab(one, 'solo');
    const a2 = await tab(one, 'solo');
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await (i % 2 === 0 ? one : two).enqueue('solo', { i }));
    // By distinct ids: an unacked message comes again after ACK_TIMEOUT_MS, which a slow run of
    // enqueues can outlast.
    await waitUntil(() => firstSeen(a1, new Set()).length >= 5 && firstSeen(a2, new Set()).length >= 5, 'both tabs got 5');
    expect(firstSeen(a1, new Set())).toEqual(ids);
    expect(firstSeen(a2, new Set())).toEqual(ids);
    await one.ack(await one.token('solo'), ids);
    for (const node of apps()) {
      expect(await peerFrames(node, 'sent')).toBe(0);
      expect(await peerFrames(node, 'received')).toBe(0);
    }
    a1.close();
    a2.close();
  });

  it('delivers every message to the tabs on both nodes, in order, with the same ids', async () => {
    const [one, two] = apps();
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
    const [one, two] = apps();
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
    const [one, two] = apps();
    const a = await tab(one, 'acker');
    const b = await tab(two, 'acker');
    await warmUp('acker', a, b);
    const count = timesSeen;

    const unacked = await one.enqueue('acker', 'no ack yet');
    await waitUntil(() => count(a, unacked) >= 2 && count(b, unacked) >= 2, 'both tabs got it twice');

    const acked = await two.enqueue('acker', 'ack me');
    await waitUntil(() => count(a, acked) >= 1 && count(b, acked) >= 1, 'both tabs got it');
    // The ack goes through node 2, from the tab on node 2; node 1 holds the other tab.
    const res = await two.ack(await two.token('acker'), [acked, unacked]);
    expect(await res.json()).toEqual({ acked: 2 });
    const seen = [count(a, acked), count(b, acked), count(a, unacked), count(b, unacked)];
    const canary = await waitPastAckTimeout([a, b], () => one.enqueue('acker', 'canary'));
    expect([count(a, acked), count(b, acked), count(a, unacked), count(b, unacked)]).toEqual(seen);
    await one.ack(await one.token('acker'), [canary]);
    expect(await one.counts('acker')).toMatchObject({ waiting: 0, inflight: 0 });
    a.close();
    b.close();
  });

  it('keeps delivering to the tab on node 1 after the tab on node 2 closes', async () => {
    const [one, two] = apps();
    const a = await tab(one, 'leaver');
    const b = await tab(two, 'leaver');
    const warm = await warmUp('leaver', a, b);
    const before = await two.enqueue('leaver', 'before');
    await waitUntil(() => idsOf(a).includes(before) && idsOf(b).includes(before), 'both tabs got it');
    await one.ack(await one.token('leaver'), [before]);

    b.close();
    await waitUntil(() => two.postbox.hub.count('leaver') === 0, 'node 2 saw its tab close');
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

  it('keeps delivering to the other tab after the tab on the node that drains the user closes', async () => {
    const nodesNow = apps();
    const [one, two] = nodesNow;
    const a = await tab(one, 'handover');
    const b = await tab(two, 'handover');
    const skip = new Set([await warmUp('handover', a, b)]);
    // One node holds the user's lease: it pops, and passes what it wrote to the other. Whose
    // count of frames sent moves tells which (rather than hoping the first to connect wins).
    const sentBefore = await Promise.all(nodesNow.map((node) => peerFrames(node, 'sent')));
    const before = await two.enqueue('handover', 'before');
    await waitUntil(() => idsOf(a).includes(before) && idsOf(b).includes(before), 'both tabs got it');
    await two.ack(await two.token('handover'), [before]);
    skip.add(before);
    const sent = await Promise.all(nodesNow.map(async (node, i) => (await peerFrames(node, 'sent')) - sentBefore[i]!));
    expect(sent[0]! + sent[1]!, 'the drainer passed the message on').toBeGreaterThan(0);
    const drainer = sent[0]! >= sent[1]! ? 0 : 1;
    const [leaving, staying] = drainer === 0 ? [a, b] : [b, a];

    leaving.close();
    await waitUntil(() => nodesNow[drainer]!.postbox.hub.count('handover') === 0, 'the draining node saw its tab close');
    const after: string[] = [];
    for (let i = 0; i < 6; i += 1) after.push(await (i % 2 === 0 ? one : two).enqueue('handover', { after: i }));
    await waitUntil(() => firstSeen(staying, skip).length >= 6, 'the other tab got all 6');
    expect(firstSeen(staying, skip)).toEqual(after);
    staying.close();
  });
});
