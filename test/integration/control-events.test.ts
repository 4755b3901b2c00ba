import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import { createKeys } from '../../src/queue/keys.js';
import { openSse, type SseEvent, type SseReader } from '../helpers/read-sse.js';
import { waitForState } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The control events of stream open (postbox.counts, postbox.expired), the counts route, and
// the reserved `postbox.` prefix, on real nodes and a real Redis.
let redis: TestRedis;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, HOUSEKEEPING_INTERVAL_MS: 300 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

async function stream(userId: string, notices = true): Promise<SseReader> {
  const reader = await openSse(`${app.streamUrl(await app.token(userId))}${notices ? '&notices=1' : ''}`);
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}
const control = (reader: SseReader, name: string) => reader.events.filter((e) => e.event === `postbox.${name}`);
const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));
const json = (e: SseEvent | undefined) => JSON.parse(e?.data ?? 'null') as unknown;

async function counts(userId: string): Promise<Response> {
  return fetch(`${app.url}/v1/me/counts`, { headers: { authorization: `Bearer ${await app.token(userId)}` } });
}

describe('counts for a badge', () => {
  it('GET /v1/me/counts answers the token user\'s waiting and in-flight messages', async () => {
    expect(await (await counts('badge')).json()).toEqual({ waiting: 0, inflight: 0 });
    const ids = await Promise.all([1, 2, 3].map((n) => app.enqueue('badge', n)));
    expect(await (await counts('badge')).json()).toEqual({ waiting: 3, inflight: 0 });
    const tab = await stream('badge', false);
    await waitUntil(() => messages(tab).length === 3, 'written');
    expect(await (await counts('badge')).json()).toEqual({ waiting: 0, inflight: 3 });
    await app.ack(await app.token('badge'), [ids[0] as string]);
    expect(await (await counts('badge')).json()).toEqual({ waiting: 0, inflight: 2 });
    tab.close();

    expect((await fetch(`${app.url}/v1/me/counts`)).status).toBe(401);
    const withApiKey = await fetch(`${app.url}/v1/me/counts`, { headers: { authorization: `Bearer ${app.config.API_KEY}` } });
    expect(withApiKey.status).toBe(403);
  });

  it('sends postbox.counts first on a stream that asks for notices, with no id, before the catch-up', async () => {
    for (const n of [1, 2]) await app.enqueue('opener', n);
    const tab = await stream('opener');
    await waitUntil(() => messages(tab).length === 2, 'written');
    expect(tab.events[0]).toEqual({ id: undefined, event: 'postbox.counts', data: JSON.stringify({ waiting: 2, inflight: 0 }) });
    tab.close();
    await waitUntil(() => app.postbox.hub.count('opener') === 0, 'closed');
    // The next stream: both are in flight now, and come again after the counts.
    const again = await stream('opener');
    await waitUntil(() => messages(again).length === 2, 'the catch-up');
    expect(again.events[0]?.event).toBe('postbox.counts');
    expect(json(again.events[0])).toEqual({ waiting: 0, inflight: 2 });
    again.close();
  });

  it('counts in postbox.counts what GET /v1/me/counts counts: a message past its TTL, not dropped yet, is neither waiting nor in flight', async () => {
    // The node's clock moves on when the test says so, and its housekeeping runs daily: nothing
    // drops the expired messages before the stream opens, and nothing races its counts.
    let aheadMs = 0;
    const clock: Clock = { ...systemClock, now: () => Date.now() + aheadMs };
    const later = await startApp(
      redis.url,
      { KEY_PREFIX: 'later', DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 3_600_000, HOUSEKEEPING_INTERVAL_MS: 86_400_000 },
      { clock },
    );
    try {
      const badge = async () => {
        const res = await fetch(`${later.url}/v1/me/counts`, { headers: { authorization: `Bearer ${await later.token('ttl')}` } });
        return (await res.json()) as unknown;
      };
      // Two written and left unacked (one of them expires), then two waiting (one expires).
      await later.enqueue('ttl', 'written, then expires', { ttlMs: 60_000 });
      await later.enqueue('ttl', 'written');
      const first = await openSse(later.streamUrl(await later.token('ttl')));
      readers.push(first);
      await waitUntil(() => messages(first).length === 2, 'both written');
      first.close();
      await waitUntil(() => later.postbox.hub.count('ttl') === 0, 'closed');
      await later.enqueue('ttl', 'waits, then expires', { ttlMs: 60_000 });
      await later.enqueue('ttl', 'waits');
      expect(await badge()).toEqual({ waiting: 2, inflight: 2 });

      aheadMs = 120_000;
      expect(await badge()).toEqual({ waiting: 1, inflight: 1 });
      const tab = await openSse(`${later.streamUrl(await later.token('ttl'))}&notices=1`);
      readers.push(tab);
      await waitUntil(() => control(tab, 'counts').length === 1, 'the counts');
      expect(tab.events[0]?.event).toBe('postbox.counts');
      expect(json(tab.events[0])).toEqual({ waiting: 1, inflight: 1 });
      tab.close();
    } finally {
      await later.close();
    }
  });

  it('sends no control event of stream open to a stream that did not ask', async () => {
    await app.enqueue('plain', 'only this');
    const tab = await stream('plain', false);
    await waitUntil(() => tab.events.length >= 1, 'the message');
    expect(tab.events.map((e) => e.event)).toEqual(['message']);
    tab.close();
  });
});

describe('"you missed something"', () => {
  it('tells the next stream that asks which messages expired before they were delivered, once', async () => {
    const expired = [];
    for (let n = 0; n < 3; n += 1) expired.push(await app.enqueue('away', { n }, { ttlMs: 100 }));
    const kept = await app.enqueue('away', 'still here');
    // Nobody is connected: housekeeping drops them, and notes them for the user.
    const client = redis.client();
    await waitUntil(async () => (await client.get(createKeys('pb').missedCount('away'))) === '3', 'the sweep noted three');

    // A stream that does not ask leaves the notice for one that does.
    const plain = await stream('away', false);
    await waitUntil(() => messages(plain).length === 1, 'the kept message');
    plain.close();
    await waitUntil(() => app.postbox.hub.count('away') === 0, 'closed');
    const tab = await stream('away');
    await waitUntil(() => messages(tab).length === 1, 'the kept message again');
    expect(tab.events.map((e) => e.event)).toEqual(['postbox.counts', 'postbox.expired', 'message']);
    expect(tab.events[1]?.id).toBeUndefined();
    expect(json(tab.events[1])).toEqual({ count: 3, ids: expired });
    expect(messages(tab)[0]?.id).toBe(kept);
    tab.close();
    await waitUntil(() => app.postbox.hub.count('away') === 0, 'closed');

    // Taken: the stream after gets the counts only.
    const next = await stream('away');
    await waitUntil(() => control(next, 'counts').length === 1 && messages(next).length === 1, 'counts and the catch-up');
    expect(control(next, 'expired')).toHaveLength(0);
    next.close();
  });

  it('also notes what a connected user\'s pop drops unwritten, for the next stream', async () => {
    // A full window: the second message waits behind the first, and expires there.
    const small = await startApp(redis.url, { KEY_PREFIX: 'small', MAX_INFLIGHT: 1, DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 60_000 });
    try {
      const token = await small.token('queued');
      const first = await small.enqueue('queued', 'first');
      const late = await small.enqueue('queued', 'waits, then expires', { ttlMs: 300 });
      const tab = await openSse(`${small.streamUrl(token)}&notices=1`);
      readers.push(tab);
      await waitUntil(() => messages(tab).length === 1, 'the first one');
      // Past its TTL, still in the mailbox behind the first: the status says expired already.
      await waitForState(small, 'queued', late, 'expired');
      await small.ack(token, [first]);
      const client = redis.client();
      await waitUntil(async () => (await client.get(createKeys('small').missedCount('queued'))) === '1', 'the pop noted it');
      expect(messages(tab)).toHaveLength(1);
      tab.close();
      await waitUntil(() => small.postbox.hub.count('queued') === 0, 'closed');
      const next = await openSse(`${small.streamUrl(token)}&notices=1`);
      readers.push(next);
      await waitUntil(() => control(next, 'expired').length === 1, 'the notice');
      expect(json(control(next, 'expired')[0])).toEqual({ count: 1, ids: [late] });
      next.close();
    } finally {
      await small.close();
    }
  });

  it('keeps the last 100 ids and the whole count', async () => {
    const res = await app.produce('/v1/messages', {
      messages: Array.from({ length: 120 }, (_, n) => ({ userId: 'many-away', data: n, ttlMs: 100 })),
    });
    const ids = ((await res.json()) as { ids: string[] }).ids;
    const client = redis.client();
    await waitUntil(async () => (await client.get(createKeys('pb').missedCount('many-away'))) === '120', 'the sweep noted 120');
    const tab = await stream('many-away');
    await waitUntil(() => control(tab, 'expired').length === 1, 'the notice');
    expect(json(control(tab, 'expired')[0])).toEqual({ count: 120, ids: ids.slice(20) });
    tab.close();
  });
});

describe('the postbox. prefix', () => {
  const refusals: Array<[string, string, string, unknown]> = [
    ['enqueue', 'POST', '/v1/users/u1/messages', { event: 'postbox.acked', data: 1 }],
    ['enqueue, any case', 'POST', '/v1/users/u1/messages', { event: 'Postbox.Counts', data: 1 }],
    ['scheduled', 'POST', '/v1/users/u1/messages', { event: 'postbox.expired', data: 1, delayMs: 1000 }],
    ['batch', 'POST', '/v1/messages', { messages: [{ userId: 'u1', data: 1 }, { userId: 'u2', event: 'postbox.x', data: 2 }] }],
    ['room', 'POST', '/v1/rooms/lobby/messages', { event: 'postbox.acked', data: 1 }],
    ['recurring', 'PUT', '/v1/users/u1/schedules/tick', { every: 1000, event: 'postbox.tick', data: 1 }],
  ];

  it.each(refusals)('is refused with 400 on %s, changing nothing', async (_name, method, path, body) => {
    await app.call('PUT', '/v1/rooms/lobby/members/u1');
    const client = redis.client();
    const before = await Promise.all(['u1', 'u2'].map((u) => client.xlen(`pb:{${u}}:m`)));
    const res = await app.call(method, path, body);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('PB_ERR_VALIDATION');
    expect(error.message).toMatch(/reserved for the server's control events/);
    expect(await Promise.all(['u1', 'u2'].map((u) => client.xlen(`pb:{${u}}:m`)))).toEqual(before);
  });

  it('leaves other names with dots alone', async () => {
    const res = await app.call('POST', '/v1/users/u1/messages', { event: 'postboxes.sent', data: 1 });
    expect(res.status).toBe(201);
  });
});
