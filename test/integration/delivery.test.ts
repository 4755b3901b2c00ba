import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse, sleep } from '../helpers/read-sse.js';

let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 3, RETRY_MS: 1500 });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

const streamUrl = (token: string, extra = '') => `${app.url}/v1/stream?token=${encodeURIComponent(token)}${extra}`;

describe('delivery', () => {
  it('delivers messages queued while offline, in order, with their ids, retry first', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await app.enqueue('offline-user', { n: i }, { event: 'note' }));
    const sse = await openSse(streamUrl(await app.token('offline-user')));
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

  it('delivers to a connected user within milliseconds, not the drain interval', async () => {
    const slow = await startApp(redis.url, { DRAIN_INTERVAL_MS: 5000, KEY_PREFIX: 'slow' });
    try {
      const sse = await openSse(`${slow.url}/v1/stream?token=${await slow.token('fast-user')}`);
      await sleep(100);
      const sentAt = Date.now();
      await slow.enqueue('fast-user', { hello: 'now' });
      const [event] = await sse.waitFor(1, 2000);
      const latency = Date.now() - sentAt;
      expect(JSON.parse(event!.data)).toEqual({ hello: 'now' });
      expect(event!.event).toBe('message');
      // Far below the 5 s drain interval: the enqueue woke the drain.
      expect(latency).toBeLessThan(1000);
      sse.close();
    } finally {
      await slow.close();
    }
  });

  it('stops delivering a message once it is acked', async () => {
    const token = await app.token('acker');
    const sse = await openSse(streamUrl(token));
    const id = await app.enqueue('acker', 'ack me');
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe(id);
    const res = await app.ack(token, [id]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: 1 });
    await sleep(1500); // more than two ack timeouts
    expect(sse.events).toHaveLength(1);
    const view = (await (await app.admin('/admin/queues/acker')).json()) as { waiting: number; inflight: number };
    expect(view).toMatchObject({ waiting: 0, inflight: 0 });
    sse.close();
  });

  it('writes each message to every open stream of the user; one ack is enough', async () => {
    const token = await app.token('two-tabs');
    const tabA = await openSse(streamUrl(token));
    const tabB = await openSse(streamUrl(token));
    await sleep(100);
    const id = await app.enqueue('two-tabs', 'both');
    const [[a], [b]] = await Promise.all([tabA.waitFor(1), tabB.waitFor(1)]);
    expect(a!.id).toBe(id);
    expect(b!.id).toBe(id);
    expect(await (await app.ack(token, [id])).json()).toEqual({ acked: 1 });
    // Both tabs hear that it was acked (a control event, no id), and neither gets it again.
    const acked = { id: undefined, event: 'postbox.acked', data: JSON.stringify({ ids: [id] }) };
    await Promise.all([tabA.waitFor(2), tabB.waitFor(2)]);
    await sleep(1200);
    expect(tabA.events).toEqual([a, acked]);
    expect(tabB.events).toEqual([b, acked]);
    tabA.close();
    tabB.close();
  });

  it('keeps users apart: a stream sees only its user, and acks of other users ids do nothing', async () => {
    const alice = await app.token('alice');
    const bob = await app.token('bob');
    const aliceSse = await openSse(streamUrl(alice));
    const bobSse = await openSse(streamUrl(bob));
    const aliceId = await app.enqueue('alice', 'for alice');
    const bobId = await app.enqueue('bob', 'for bob');
    await aliceSse.waitFor(1);
    await bobSse.waitFor(1);
    await sleep(100);
    expect(aliceSse.events.map((e) => e.id)).toEqual([aliceId]);
    expect(bobSse.events.map((e) => e.id)).toEqual([bobId]);
    // Bob acks Alice's id: ignored, and Alice's message is still in flight.
    expect(await (await app.ack(bob, [aliceId])).json()).toEqual({ acked: 0 });
    const view = (await (await app.admin('/admin/queues/alice')).json()) as { inflight: number };
    expect(view.inflight).toBe(1);
    await app.ack(alice, [aliceId]);
    await app.ack(bob, [bobId]);
    aliceSse.close();
    bobSse.close();
  });

  it('sends heartbeat comments', async () => {
    const beat = await startApp(redis.url, { HEARTBEAT_MS: 1000, KEY_PREFIX: 'beat' });
    try {
      const sse = await openSse(`${beat.url}/v1/stream?token=${await beat.token('pinged')}`);
      await sleep(2300);
      expect(sse.comments.filter((c) => c.trim() === 'ping').length).toBeGreaterThanOrEqual(2);
      sse.close();
    } finally {
      await beat.close();
    }
  });

  it('respects MAX_INFLIGHT: no more than the window is written before acks', async () => {
    const narrow = await startApp(redis.url, { MAX_INFLIGHT: 2, KEY_PREFIX: 'narrow', DRAIN_INTERVAL_MS: 50 });
    try {
      const token = await narrow.token('windowed');
      for (let i = 0; i < 5; i += 1) await narrow.enqueue('windowed', i);
      const sse = await openSse(`${narrow.url}/v1/stream?token=${token}`);
      await sse.waitFor(2);
      await sleep(300);
      expect(sse.events).toHaveLength(2);
      await narrow.ack(token, sse.events.map((e) => e.id!));
      await sse.waitFor(4);
      await sleep(200);
      expect(sse.events.map((e) => e.data)).toEqual(['0', '1', '2', '3']);
      sse.close();
    } finally {
      await narrow.close();
    }
  });
});
