import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { systemClock } from '../../src/clock.js';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { createKeys } from '../../src/queue/keys.js';
import { failUntilDead } from '../helpers/dead-letters.js';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { statusOf, waitForState, type StatusBody } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { buildClient, startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The status API through every state a message goes through, on a real Redis and real streams.
let redis: TestRedis;
let app: TestApp;
const readers: SseReader[] = [];
const keys = createKeys('pb');
const startKeys = { API_KEY: 'test-api-key-0123456789', ADMIN_KEY: 'test-admin-key-0123456789', TOKEN_SECRET: 'test-token-secret-0123456789-0123456789' };

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 2 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

async function stream(on: TestApp, userId: string): Promise<SseReader> {
  const reader = await openSse(on.streamUrl(await on.token(userId)));
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}

const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));
const ms = (iso: string | undefined) => Date.parse(iso ?? '');
/** The first write is read back as Redis time minus an idle time, both in whole ms: equal within 2 ms. */
const sameMs = (a: string | undefined, b: string | undefined) => Math.abs(ms(a) - ms(b)) <= 2;

async function ackAll(on: TestApp, userId: string, ids: string[]): Promise<number> {
  const res = await on.ack(await on.token(userId), ids);
  return ((await res.json()) as { acked: number }).acked;
}

describe('message status', () => {
  it('follows a scheduled message through scheduled, waiting, inflight and acked', async () => {
    const res = await app.produce('/v1/users/journey/messages', { event: 'note', data: { n: 1 }, delayMs: 800 });
    expect(res.status).toBe(202);
    const { scheduledId } = (await res.json()) as { scheduledId: string };

    const scheduled = (await statusOf(app, 'journey', scheduledId)) as StatusBody;
    expect(scheduled).toMatchObject({ id: scheduledId, scheduledId, state: 'scheduled', deliveries: 0, attempts: 0 });
    expect(ms(scheduled.deliverAt)).toBeGreaterThan(ms(scheduled.enqueuedAt));

    // Due: it is in the mailbox now, under an event id, and nobody has read it.
    const due = await waitForState(app, 'journey', scheduledId, 'waiting');
    expect(due).toMatchObject({ id: scheduledId, scheduledId, deliveries: 0, attempts: 0 });
    const id = due.eventId as string;
    expect(id).toMatch(/^\d+-\d+$/);
    expect(await statusOf(app, 'journey', id)).toMatchObject({ id, state: 'waiting', attempts: 0 });

    const tab = await stream(app, 'journey');
    await waitUntil(() => messages(tab).length === 1, 'the message is written');
    const inflight = await waitForState(app, 'journey', id, 'inflight');
    expect(inflight).toMatchObject({ attempts: 1, deliveries: 0 });
    expect(ms(inflight.firstDeliveredAt)).toBeGreaterThanOrEqual(ms(inflight.enqueuedAt));

    expect(await ackAll(app, 'journey', [id])).toBe(1);
    const acked = (await statusOf(app, 'journey', id)) as StatusBody;
    expect(acked).toMatchObject({ id, state: 'acked', deliveries: 1, attempts: 1 });
    expect(sameMs(acked.firstDeliveredAt, inflight.firstDeliveredAt)).toBe(true);
    expect(ms(acked.ackedAt)).toBeGreaterThanOrEqual(ms(acked.firstDeliveredAt));
    // The scheduled id keeps answering, with the event id it got.
    expect(await statusOf(app, 'journey', scheduledId)).toMatchObject({ id: scheduledId, eventId: id, state: 'acked' });
    tab.close();
  });

  it('keeps the first delivery time of a message written again, and counts both attempts', async () => {
    const id = await app.enqueue('twice', 'again');
    const first = await stream(app, 'twice');
    await waitUntil(() => messages(first).length === 1, 'the first write');
    const written = (await waitForState(app, 'twice', id, 'inflight')).firstDeliveredAt;
    first.close();
    await waitUntil(() => app.postbox.hub.count('twice') === 0, 'the first stream closed');
    // A new stream claims what was in flight: a second write of the same message.
    const second = await stream(app, 'twice');
    await waitUntil(() => messages(second).length === 1, 'the second write');
    const again = await waitForState(app, 'twice', id, 'inflight');
    expect(again.attempts).toBe(2);
    expect(sameMs(again.firstDeliveredAt, written)).toBe(true);
    expect(await ackAll(app, 'twice', [id])).toBe(1);
    const acked = (await statusOf(app, 'twice', id)) as StatusBody;
    expect(acked).toMatchObject({ state: 'acked', attempts: 2 });
    expect(sameMs(acked.firstDeliveredAt, written)).toBe(true);
    const client = redis.client();
    expect(await client.hexists(keys.firstWrites('twice'), id)).toBe(0); // forgotten with the ack
    second.close();
  });

  it('says dead, with the reason and the deliveries, once a message used up MAX_DELIVERIES', async () => {
    const id = await app.enqueue('doomed', 'fails every time');
    await failUntilDead(app, 'doomed', 1);
    const dead = await waitForState(app, 'doomed', id, 'dead');
    expect(dead).toMatchObject({ id, reason: 'max-deliveries', deliveries: 2 });
    expect(dead.attempts).toBeGreaterThanOrEqual(2);
    expect(ms(dead.deadAt)).toBeGreaterThanOrEqual(ms(dead.firstDeliveredAt));
  });

  it('says expired for a message past its TTL, delivered or not, before and after it is dropped', async () => {
    const client = redis.client();
    const never = await app.enqueue('late', 'too late', { ttlMs: 150 });
    // Nobody drains it yet: it is past its TTL, so it will never be written: expired already.
    const before = await waitForState(app, 'late', never, 'expired');
    expect(before).toMatchObject({ attempts: 0, deliveries: 0 });
    expect(Math.abs(ms(before.expiredAt) - (ms(before.enqueuedAt) + 150))).toBeLessThanOrEqual(50);
    expect(await client.hexists(keys.receipts('late'), never)).toBe(0);
    // A stream opens: the pop drops it, and the receipt says it was never written.
    const tab = await stream(app, 'late');
    await waitUntil(async () => (await client.hexists(keys.receipts('late'), never)) === 1, 'the receipt is written');
    const after = (await statusOf(app, 'late', never)) as StatusBody;
    expect(after).toMatchObject({ id: never, state: 'expired', attempts: 0 });
    expect(after.firstDeliveredAt).toBeUndefined();
    expect(messages(tab)).toHaveLength(0);
    tab.close();

    // Written once, not acked, then past its TTL: expired with its attempt and first delivery.
    const once = await app.enqueue('late-once', 'read, never acked', { ttlMs: 1500 });
    const reader = await stream(app, 'late-once');
    await waitUntil(() => messages(reader).length === 1, 'the message is written');
    reader.close();
    // Past its TTL it reads expired at once; the next stream's pop drops it and writes the receipt.
    await waitForState(app, 'late-once', once, 'expired');
    await waitUntil(() => app.postbox.hub.count('late-once') === 0, 'the first stream closed');
    const again = await stream(app, 'late-once');
    await waitUntil(async () => (await client.hexists(keys.receipts('late-once'), once)) === 1, 'the receipt is written');
    const gone = (await statusOf(app, 'late-once', once)) as StatusBody;
    expect(gone).toMatchObject({ state: 'expired', attempts: 1 });
    expect(ms(gone.firstDeliveredAt)).toBeGreaterThanOrEqual(ms(gone.enqueuedAt));
    expect(messages(again)).toHaveLength(0);
    again.close();
  });

  it('answers 404 for unknown ids, users and malformed ids', async () => {
    const id = await app.enqueue('known', 1);
    expect(await statusOf(app, 'known', '1-0')).toBe(404);
    expect(await statusOf(app, 'someone-else', id)).toBe(404);
    expect(await statusOf(app, 'known', 'no such scheduled id')).toBe(404);
    expect(await statusOf(app, 'known', 's-00000000-0000-0000-0000-000000000000')).toBe(404);
    const noKey = await fetch(`${app.url}/v1/users/known/messages/${id}`);
    expect(noKey.status).toBe(401);
  });
});

describe('batch status', () => {
  it('answers 1000 messages of 50 users in one request, with one script call per user', async () => {
    const users = Array.from({ length: 50 }, (_, i) => `batch-${i}`);
    const res = await app.produce('/v1/messages', {
      messages: Array.from({ length: 990 }, (_, n) => ({ userId: users[n % 50], data: n })),
    });
    expect(res.status).toBe(201);
    const ids = ((await res.json()) as { ids: string[] }).ids;
    const pairs = ids.map((id, n) => ({ userId: users[n % 50] as string, id }));
    // Ten that do not exist, of the same users.
    for (let n = 0; n < 10; n += 1) pairs.push({ userId: users[n] as string, id: `${n + 1}-0` });

    // Warm the script on this connection, so what MONITOR sees below is only the batch's calls.
    await app.produce('/v1/messages/status', { messages: [pairs[0]] });
    const sha = createHash('sha1').update(readFileSync(new URL('../../src/queue/lua/status.lua', import.meta.url))).digest('hex');
    const monitor = await redis.client().monitor();
    const calls: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[1] === sha) calls.push(args);
    });
    const answer = await app.produce('/v1/messages/status', { messages: pairs });
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as { messages: Array<StatusBody & { userId: string }> };
    await waitUntil(() => calls.length >= 50, 'MONITOR saw the calls', 5000);
    monitor.disconnect();

    expect(body.messages).toHaveLength(1000);
    body.messages.forEach((m, i) => expect(m).toMatchObject({ userId: pairs[i]?.userId, id: pairs[i]?.id }));
    expect(body.messages.filter((m) => m.state === 'waiting')).toHaveLength(990);
    expect(body.messages.filter((m) => m.state === 'unknown')).toHaveLength(10);
    // One call per user, each carrying that user's ids: KEYS[1] is the user's mailbox.
    expect(calls).toHaveLength(50);
    expect(new Set(calls.map((args) => args[3]))).toEqual(new Set(users.map((u) => keys.mailbox(u))));
  });

  it('refuses more than 1000 messages and malformed pairs', async () => {
    const many = Array.from({ length: 1001 }, () => ({ userId: 'x', id: '1-0' }));
    expect((await app.produce('/v1/messages/status', { messages: many })).status).toBe(400);
    expect((await app.produce('/v1/messages/status', { messages: [{ userId: 'bad user', id: '1-0' }] })).status).toBe(400);
    expect((await app.produce('/v1/messages/status', { messages: [] })).status).toBe(400);
  });
});

describe('receipt retention', () => {
  it('keeps at most RECEIPTS_MAX_PER_USER receipts, and none past RECEIPT_RETENTION_MS', async () => {
    const short = await startApp(redis.url, {
      KEY_PREFIX: 'short',
      RECEIPT_RETENTION_MS: 1500,
      RECEIPTS_MAX_PER_USER: 3,
      DRAIN_INTERVAL_MS: 50,
    });
    try {
      const client = redis.client();
      const k = createKeys('short');
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) ids.push(await short.enqueue('brief', i));
      const tab = await stream(short, 'brief');
      await waitUntil(() => messages(tab).length === 5, 'all five are written');
      // One at a time, oldest first, so the receipts are written in id order.
      for (const id of ids) expect(await ackAll(short, 'brief', [id])).toBe(1);
      tab.close();
      const states = await Promise.all(ids.map((id) => statusOf(short, 'brief', id)));
      expect(states.slice(0, 2)).toEqual([404, 404]);
      for (const s of states.slice(2)) expect(s).toMatchObject({ state: 'acked' });
      expect(await client.hlen(k.receipts('brief'))).toBe(3);
      expect(await client.llen(k.receiptTimes('brief'))).toBe(3);

      // Past the retention: unknown, and the keys are gone from Redis by themselves.
      await waitUntil(async () => (await statusOf(short, 'brief', ids[4] as string)) === 404, 'the receipt is past its retention', 10_000);
      await waitUntil(async () => (await client.exists(k.receipts('brief'), k.receiptTimes('brief'))) === 0, 'the keys expired', 10_000);
    } finally {
      await short.close();
    }
  });

  it('trims receipts past the retention from the user\'s keys on the next write', async () => {
    // The node's clock runs ahead on demand: receipts are timed by it, the keys' expiry by Redis.
    let ahead = 0;
    const clock = { ...systemClock, now: () => Date.now() + ahead };
    const config = testConfig({ ...startKeys, KEY_PREFIX: 'trim', RECEIPT_RETENTION_MS: 60_000, DRAIN_INTERVAL_MS: 50 });
    const node = await createPostbox(config, { redisUrl: redis.url, logger: pino({ level: 'silent' }), clock });
    const trim = buildClient(node, config, await node.listen(0, '127.0.0.1'));
    try {
      const client = redis.client();
      const k = createKeys('trim');
      const old = [await trim.enqueue('trimmed', 1), await trim.enqueue('trimmed', 2)];
      const tab = await stream(trim, 'trimmed');
      await waitUntil(() => messages(tab).length === 2, 'written');
      expect(await ackAll(trim, 'trimmed', old)).toBe(2);
      expect(await client.hlen(k.receipts('trimmed'))).toBe(2);
      ahead = 61_000; // a minute later, as the node sees it
      for (const id of old) expect(await statusOf(trim, 'trimmed', id)).toBe(404);
      const fresh = await trim.enqueue('trimmed', 3);
      await waitUntil(() => messages(tab).length === 3, 'the third is written');
      expect(await ackAll(trim, 'trimmed', [fresh])).toBe(1);
      expect(await client.hkeys(k.receipts('trimmed'))).toEqual([fresh]);
      expect(await client.llen(k.receiptTimes('trimmed'))).toBe(1);
      expect(await statusOf(trim, 'trimmed', fresh)).toMatchObject({ state: 'acked' });
      tab.close();
    } finally {
      await trim.close();
    }
  });

  it('keeps no receipt with RECEIPT_RETENTION_MS=0', async () => {
    const none = await startApp(redis.url, { KEY_PREFIX: 'none', RECEIPT_RETENTION_MS: 0, DRAIN_INTERVAL_MS: 50 });
    try {
      const id = await none.enqueue('forgetful', 1);
      const tab = await stream(none, 'forgetful');
      await waitUntil(() => messages(tab).length === 1, 'written');
      expect(await statusOf(none, 'forgetful', id)).toMatchObject({ state: 'inflight' });
      expect(await ackAll(none, 'forgetful', [id])).toBe(1);
      expect(await statusOf(none, 'forgetful', id)).toBe(404);
      expect(await redis.client().exists(createKeys('none').receipts('forgetful'))).toBe(0);
      tab.close();
    } finally {
      await none.close();
    }
  });
});
