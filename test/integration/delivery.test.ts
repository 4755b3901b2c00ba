import { describe, expect, it } from 'vitest';
import { timesSeen, waitPastAckTimeout } from '../helpers/past-ack-timeout.js';
import { sleep, type SseReader } from '../helpers/read-sse.js';
import { startNodeForTest, useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({ ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 3, RETRY_MS: 1500 });

/** Ids in order of first arrival, as a client that drops repeats sees them. */
const firstSeen = (reader: SseReader) => [...new Set(reader.events.map((e) => e.id))];

/** Ids the mailbox still holds as unacked: in flight, or dead letters (MAX_DELIVERIES is 3, quickly reached). */
async function unacked(userId: string): Promise<string[]> {
  const res = await node.app.admin(`/admin/queues/${userId}`);
  const view = (await res.json()) as { inflightMessages: Array<{ id: string }>; deadLetters: Array<{ id: string }> };
  return [...view.inflightMessages, ...view.deadLetters].map((m) => m.id);
}

describe('delivery', () => {
  it('delivers messages queued while offline, in order, with their ids, retry first', async () => {
    const { app } = node;
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await app.enqueue('offline-user', { n: i }, { event: 'note' }));
    const sse = await app.openStream('offline-user');
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(sse.headers.get('cache-control')).toMatch(/no-cache/);
    expect(sse.headers.get('x-accel-buffering')).toBe('no');
    const events = await sse.waitFor(5);
    expect(sse.retry).toBe(1500);
    expect(events.map((e) => e.id)).toEqual(ids);
    expect(events.map((e) => JSON.parse(e.data))).toEqual([0, 1, 2, 3, 4].map((n) => ({ n })));
    expect(new Set(events.map((e) => e.event))).toEqual(new Set(['note']));
    // Ids are time-ordered stream ids.
    expect([...ids].sort((a, b) => (BigInt(a.split('-')[0]!) < BigInt(b.split('-')[0]!) ? -1 : 1))).toEqual(ids);
    sse.close();
  });

  it('delivers to a connected user when the message is enqueued, not at the next drain interval', async () => {
    // The longest drain interval there is (60 s), started with this node: within the 20 s
    // waits below no drain tick comes, so only the wake an enqueue sends can deliver.
    const slow = await startNodeForTest(node.redis, { DRAIN_INTERVAL_MS: 60_000, KEY_PREFIX: 'slow' });
    const sse = await slow.openStream('fast-user');
    // The first may ride on the pass the new stream starts; the second has only the wake.
    await slow.enqueue('fast-user', { hello: 'first' });
    await sse.waitFor(1);
    await slow.enqueue('fast-user', { hello: 'now' });
    const [, event] = await sse.waitFor(2);
    expect(JSON.parse(event!.data)).toEqual({ hello: 'now' });
    expect(event!.event).toBe('message');
  });

  it('stops delivering a message once it is acked', async () => {
    const { app } = node;
    const token = await app.token('acker');
    const sse = await app.openStream('acker', { token });
    const id = await app.enqueue('acker', 'ack me');
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe(id);
    const res = await app.ack(token, [id]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: 1 });
    const canary = await waitPastAckTimeout([sse], () => app.enqueue('acker', 'canary'), (c) => app.nack(token, [c]));
    expect(timesSeen(sse, id)).toBe(1);
    expect(await unacked('acker')).toEqual([canary]);
    await app.ack(token, [canary]);
  });

  it('writes each message to every open stream of the user; one ack is enough', async () => {
    const { app } = node;
    const token = await app.token('two-tabs');
    const tabA = await app.openStream('two-tabs', { token });
    const tabB = await app.openStream('two-tabs', { token });
    const id = await app.enqueue('two-tabs', 'both');
    const [[a], [b]] = await Promise.all([tabA.waitFor(1), tabB.waitFor(1)]);
    expect(a!.id).toBe(id);
    expect(b!.id).toBe(id);
    expect(await (await app.ack(token, [id])).json()).toEqual({ acked: 1 });
    // Both tabs hear that it was acked (a control event, no id), and neither gets it again.
    const acked = { id: undefined, event: 'postbox.acked', data: JSON.stringify({ ids: [id] }) };
    await waitUntil(() => [tabA, tabB].every((t) => t.events.some((e) => e.event === 'postbox.acked')), 'both tabs were told');
    expect(tabA.events.filter((e) => e.event === 'postbox.acked')).toEqual([acked]);
    expect(tabB.events.filter((e) => e.event === 'postbox.acked')).toEqual([acked]);
    const canary = await waitPastAckTimeout([tabA, tabB], () => app.enqueue('two-tabs', 'canary'), (c) => app.nack(token, [c]));
    expect([timesSeen(tabA, id), timesSeen(tabB, id)]).toEqual([1, 1]);
    await app.ack(token, [canary]);
    tabA.close();
    tabB.close();
  });

  it('keeps users apart: a stream sees only its user, and acks of other users ids do nothing', async () => {
    const { app } = node;
    const alice = await app.token('alice');
    const bob = await app.token('bob');
    const aliceSse = await app.openStream('alice', { token: alice });
    const bobSse = await app.openStream('bob', { token: bob });
    const aliceId = await app.enqueue('alice', 'for alice');
    const bobId = await app.enqueue('bob', 'for bob');
    await aliceSse.waitFor(1);
    await bobSse.waitFor(1);
    // A second message each, written after the first of both: whatever either stream got
    // before it is all it got.
    const aliceNext = await app.enqueue('alice', 'alice again');
    const bobNext = await app.enqueue('bob', 'bob again');
    // By id: the first may come again (ACK_TIMEOUT_MS) before the second arrives.
    await waitUntil(
      () => timesSeen(aliceSse, aliceNext) > 0 && timesSeen(bobSse, bobNext) > 0,
      'the second message of each arrives',
    );
    expect(firstSeen(aliceSse)).toEqual([aliceId, aliceNext]);
    expect(firstSeen(bobSse)).toEqual([bobId, bobNext]);
    // Bob acks Alice's id: ignored, and Alice's message is still unacked.
    expect(await (await app.ack(bob, [aliceId])).json()).toEqual({ acked: 0 });
    expect(await unacked('alice')).toContain(aliceId);
    await app.ack(alice, [aliceId, aliceNext]);
    await app.ack(bob, [bobId, bobNext]);
    aliceSse.close();
    bobSse.close();
  });

  it('sends heartbeat comments', async () => {
    const beat = await startNodeForTest(node.redis, { HEARTBEAT_MS: 1000, KEY_PREFIX: 'beat' });
    const sse = await beat.openStream('pinged');
    await waitUntil(() => sse.comments.filter((c) => c.trim() === 'ping').length >= 2, 'two heartbeats arrive');
  });

  it('respects MAX_INFLIGHT: no more than the window is written before acks', async () => {
    const DRAIN_INTERVAL_MS = 50;
    // Nothing may come until an ack, however long one waits; the check looks for ten drain
    // intervals. A slow machine runs fewer passes in it, which could only hide a bug, never
    // fail a correct node.
    const QUIET_MS = 10 * DRAIN_INTERVAL_MS;
    const narrow = await startNodeForTest(node.redis, { MAX_INFLIGHT: 2, KEY_PREFIX: 'narrow', DRAIN_INTERVAL_MS });
    const token = await narrow.token('windowed');
    for (let i = 0; i < 5; i += 1) await narrow.enqueue('windowed', i);
    const sse = await narrow.openStream('windowed', { token });
    await sse.waitFor(2);
    await sleep(QUIET_MS);
    expect(sse.events).toHaveLength(2);
    expect(await narrow.counts('windowed')).toMatchObject({ waiting: 3, inflight: 2 });
    await narrow.ack(token, sse.events.map((e) => e.id!));
    await sse.waitFor(4);
    await sleep(QUIET_MS);
    expect(sse.events.map((e) => e.data)).toEqual(['0', '1', '2', '3']);
    expect(await narrow.counts('windowed')).toMatchObject({ waiting: 1, inflight: 2 });
  });
});
