import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueuedAtOf } from '../../src/queue/keys.js';
import { pushCheckJobId } from '../../src/queue/push-jobs.js';
import { finishedCheck, pushQueue } from '../helpers/push-jobs.js';
import { startPushService, type PushSubscriptionJson, type ReceivedPush, type TestPushService } from '../helpers/push-service.js';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { startPushApp, testVapid, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

const PUSH_AFTER_MS = 400;
const ACK_TIMEOUT_MS = 3000;

let redis: TestRedis;
let push: TestPushService;
/** Default ack timeout (30 s): a message an open stream holds is never due within a test. */
let app: PushTestApp;
/** A short ack timeout, for messages left unacked on an open stream. Its own KEY_PREFIX (own queues and mailboxes). */
let short: PushTestApp;
const streams: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_AFTER_MS, PUSH_TTL_SECONDS: 1234 } });
  short = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_AFTER_MS, ACK_TIMEOUT_MS, KEY_PREFIX: 'short' } });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await Promise.allSettled([app?.close(), short?.close()]);
  await push?.close();
  await redis?.stop();
});

interface Payload {
  data?: unknown;
  postbox: number;
  id: string;
  event: string;
  title: string;
  body?: string;
  topic?: string;
  ack: string;
}

const mine = (subscription: PushSubscriptionJson) => (r: ReceivedPush) => r.subscriptionId === push.idOf(subscription);
const payloadOf = (r: ReceivedPush | undefined) => JSON.parse(r?.payload ?? 'null') as Payload;

async function stream(target: PushTestApp, token: string): Promise<SseReader> {
  const reader = await openSse(target.streamUrl(token));
  streams.push(reader);
  return reader;
}

describe('a message with `push` and no open stream', () => {
  it('is pushed after PUSH_AFTER_MS, encrypted to the subscription, with its id, title, body and ack credential', async () => {
    const subscription = push.subscribe({ applicationServerKey: testVapid.publicKey });
    await app.subscribedUser('closed-tab', subscription);
    const id = await app.enqueue('closed-tab', { text: 'lunch?' }, { event: 'chat', push: { title: 'Ada', body: 'lunch?' } });

    const [got] = (await push.waitFor((all) => all.some(mine(subscription)))).filter(mine(subscription));
    // What a browser reads: the push service decrypted it with the subscription's own keys.
    expect(got).toMatchObject({ status: 201, headers: { contentEncoding: 'aes128gcm' }, vapid: { valid: true, key: testVapid.publicKey } });
    const payload = payloadOf(got);
    expect(payload).toMatchObject({ postbox: 1, id, event: 'chat', title: 'Ada', body: 'lunch?', data: { text: 'lunch?' } });
    expect(payload.ack).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // A delayed job: never before the message has waited PUSH_AFTER_MS (both clocks are this machine's).
    expect(got!.receivedAt - enqueuedAtOf(id)).toBeGreaterThanOrEqual(PUSH_AFTER_MS);
    expect(await finishedCheck(app, 'closed-tab', id)).toMatchObject({ result: 'pushed', subscriptions: 1, sent: 1 });
  });

  it('carries the message’s data only when the whole push still fits 4096 bytes', async () => {
    const subscription = push.subscribe();
    await app.subscribedUser('big-data', subscription);
    const big = await app.enqueue('big-data', { text: 'x'.repeat(5000) }, { push: { title: 'big' } });
    const [got] = (await push.waitFor((all) => all.some(mine(subscription)))).filter(mine(subscription));
    const payload = payloadOf(got);
    expect(payload).toMatchObject({ id: big, title: 'big' });
    expect(payload).not.toHaveProperty('data'); // the page's stream delivers it instead
    expect(Buffer.byteLength(got!.payload!)).toBeLessThan(4096);
  });

  it('sets TTL from the message’s ttlMs (PUSH_TTL_SECONDS without one), and the urgency and topic asked for', async () => {
    const subscription = push.subscribe();
    await app.subscribedUser('headers', subscription);
    const withTtl = await app.enqueue('headers', 1, { ttlMs: 3_600_000, push: { title: 't', urgency: 'high', topic: 'inbox' } });
    const plain = await app.enqueue('headers', 2, { push: { title: 'p' } });
    const got = (await push.waitFor((all) => all.filter(mine(subscription)).length >= 2)).filter(mine(subscription));
    const byId = new Map(got.map((r) => [payloadOf(r).id, r.headers]));
    const ttl = byId.get(withTtl)?.ttl ?? -1;
    // What is left of the hour when it was sent: at most 3600 s, and this test does not take 10 minutes.
    expect(ttl).toBeLessThanOrEqual(3600);
    expect(ttl).toBeGreaterThan(3000);
    expect(byId.get(withTtl)).toMatchObject({ urgency: 'high', topic: 'inbox' });
    expect(byId.get(plain)).toMatchObject({ ttl: 1234, urgency: 'normal', topic: undefined });
  });

  it('goes to every subscription of the user, once each', async () => {
    const phone = push.subscribe();
    const laptop = push.subscribe();
    const token = await app.subscribedUser('two-devices', phone);
    expect((await app.subscribe(token, laptop)).status).toBe(201);
    const id = await app.enqueue('two-devices', 'x', { push: { title: 'both' } });
    await push.waitFor((all) => all.some(mine(phone)) && all.some(mine(laptop)));
    expect(await finishedCheck(app, 'two-devices', id)).toMatchObject({ result: 'pushed', subscriptions: 2, sent: 2 });
    expect(push.received.filter((r) => mine(phone)(r) || mine(laptop)(r)).map((r) => payloadOf(r).id)).toEqual([id, id]);
  });

  it('is never pushed without a push option', async () => {
    const subscription = push.subscribe();
    await app.subscribedUser('no-option', subscription);
    const quiet = await app.enqueue('no-option', 'not for push');
    const loud = await app.enqueue('no-option', 'for push', { push: { title: 'loud' } });
    await push.waitFor((all) => all.some(mine(subscription)));
    expect(await pushQueue(app).getJob(pushCheckJobId('no-option', quiet))).toBeUndefined();
    expect(await finishedCheck(app, 'no-option', loud)).toMatchObject({ result: 'pushed', sent: 1 });
    expect(push.received.filter(mine(subscription)).map((r) => payloadOf(r).id)).toEqual([loud]);
  });
});

describe('a message a stream holds', () => {
  it('is not pushed while a stream is open and acking', async () => {
    const subscription = push.subscribe();
    const token = await app.subscribedUser('open-tab', subscription);
    const reader = await stream(app, token);
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await app.enqueue('open-tab', { i }, { push: { title: `m${i}` } }));
    const events = await reader.waitFor(5, 10_000);
    expect(events.map((e) => e.id)).toEqual(ids);
    expect(await (await app.ack(token, ids)).json()).toEqual({ acked: 5 });
    // Each check runs now (promoted if still delayed): the message is gone, nothing to send.
    for (const id of ids) expect(await finishedCheck(app, 'open-tab', id, { promote: true })).toEqual({ result: 'gone' });
    expect(push.received.filter(mine(subscription))).toEqual([]);
  });

  it('is never pushed once acked over SSE, even when the stream closed before the push was due', async () => {
    const subscription = push.subscribe();
    const token = await app.subscribedUser('acked-then-left', subscription);
    const reader = await stream(app, token);
    const id = await app.enqueue('acked-then-left', 'read it', { push: { title: 'read it' } });
    await reader.waitFor(1, 10_000);
    await app.ack(token, [id]);
    reader.close();
    expect(await finishedCheck(app, 'acked-then-left', id, { promote: true })).toEqual({ result: 'gone' });
    expect(push.received.filter(mine(subscription))).toEqual([]);
  });

  it('is pushed once in flight past one ack timeout with no ack, though the stream stays open', async () => {
    const subscription = push.subscribe();
    const token = await short.subscribedUser('stuck', subscription);
    const reader = await stream(short, token);
    const before = Date.now(); // before the message is written, so before its ack timeout starts
    const stuck = await short.enqueue('stuck', 'never acked', { push: { title: 'stuck' } });
    const other = await short.enqueue('stuck', 'acked');
    const events = await reader.waitFor(2, 10_000);
    expect(events.map((e) => e.id)).toEqual([stuck, other]);
    // The page acks the other one, so it is alive and its stream is kept open.
    await short.ack(token, [other]);

    const [got] = (await push.waitFor((all) => all.some(mine(subscription)), 20_000)).filter(mine(subscription));
    expect(payloadOf(got).id).toBe(stuck);
    // Not before one ack timeout in flight (less the ms rounding of Redis's idle time).
    expect(got!.receivedAt).toBeGreaterThanOrEqual(before + ACK_TIMEOUT_MS - 5);
    expect(short.postbox.hub.count('stuck')).toBe(1);
    expect(await finishedCheck(short, 'stuck', stuck)).toMatchObject({ result: 'pushed', subscriptions: 1, sent: 1 });
  });
});
