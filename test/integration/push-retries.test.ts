import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subscriptionId } from '../../src/queue/push-subscriptions.js';
import { finishedCheck, finishedSend, metric } from '../helpers/push-jobs.js';
import { startPushService, type PushSubscriptionJson, type ReceivedPush, type TestPushService } from '../helpers/push-service.js';
import { openSse } from '../helpers/read-sse.js';
import { startPushApp, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let push: TestPushService;
let app: PushTestApp;
/** An HTTPS endpoint that takes requests and never answers them: the slowest push service. */
let hanging: Server;
const hung: Array<{ end(): void }> = [];

const tls = (name: string) => readFileSync(new URL(`../helpers/tls/${name}`, import.meta.url), 'utf8');

beforeAll(async () => {
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_AFTER_MS: 100, PUSH_TIMEOUT_MS: 60_000 } });
  hanging = createServer({ cert: tls('push-service-cert.pem'), key: tls('push-service-key.pem') }, (_req, res) => hung.push(res));
  await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', () => resolve()));
});
afterAll(async () => {
  for (const res of hung) res.end();
  hanging?.closeAllConnections();
  hanging?.close();
  await app?.close();
  await push?.close();
  await redis?.stop();
});

const mine = (subscription: PushSubscriptionJson) => (r: ReceivedPush) => r.subscriptionId === push.idOf(subscription);
const idOf = (r: ReceivedPush) => (JSON.parse(r.payload ?? '{}') as { id?: string }).id;

async function pushTo(user: string, subscription: PushSubscriptionJson): Promise<string> {
  await app.subscribedUser(user, subscription);
  return app.enqueue(user, { for: user }, { push: { title: user } });
}

describe('answers of the push service', () => {
  it('a 410 deletes the subscription, and counts it gone; no retry', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 410 }]);
    const id = await pushTo('gone-410', subscription);
    expect(await finishedCheck(app, 'gone-410', id)).toMatchObject({ result: 'pushed', gone: 1, retrying: 0 });
    expect(await app.subscriptions(await app.token('gone-410'))).toEqual([]);
    expect(push.received.filter(mine(subscription)).map((r) => r.status)).toEqual([410]);
    expect(await metric(app, 'postbox_push_gone_total')).toBeGreaterThanOrEqual(1);
  });

  it('a 404 deletes the subscription too', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 404 }]);
    const id = await pushTo('gone-404', subscription);
    expect(await finishedCheck(app, 'gone-404', id)).toMatchObject({ result: 'pushed', gone: 1 });
    expect(await app.subscriptions(await app.token('gone-404'))).toEqual([]);
  });

  it('a 500 is retried, with the same message, until it is accepted', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 500 }, { status: 500 }]);
    const id = await pushTo('retry-500', subscription);
    // The check makes the first attempt, and hands the retries to a send job.
    expect(await finishedCheck(app, 'retry-500', id)).toMatchObject({ result: 'pushed', sent: 0, retrying: 1 });
    expect(await finishedSend(app, 'retry-500', id, subscriptionId(subscription.endpoint))).toEqual({ result: 'sent', status: 201 });
    const tries = push.received.filter(mine(subscription));
    expect(tries.map((r) => [r.status, idOf(r)])).toEqual([
      [500, id],
      [500, id],
      [201, id],
    ]);
    // Backoff: not at once (1 s doubling, ±20 %).
    expect(tries[1]!.receivedAt - tries[0]!.receivedAt).toBeGreaterThanOrEqual(800);
    expect(await app.subscriptions(await app.token('retry-500'))).toHaveLength(1);
  });

  it('a 429 is retried no sooner than its Retry-After', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 429, retryAfter: 3 }]);
    const id = await pushTo('retry-429', subscription);
    expect(await finishedCheck(app, 'retry-429', id)).toMatchObject({ result: 'pushed', retrying: 1 });
    expect(await finishedSend(app, 'retry-429', id, subscriptionId(subscription.endpoint))).toEqual({ result: 'sent', status: 201 });
    const tries = push.received.filter(mine(subscription));
    expect(tries.map((r) => r.status)).toEqual([429, 201]);
    expect(tries[1]!.receivedAt - tries[0]!.receivedAt).toBeGreaterThanOrEqual(3000);
  });

  it('a 413 (or another 4xx) is not retried, and counts as rejected', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 413 }]);
    const before = await metric(app, 'postbox_push_failed_total', 'reason="rejected"');
    const id = await pushTo('rejected', subscription);
    expect(await finishedCheck(app, 'rejected', id)).toMatchObject({ result: 'pushed', rejected: 1, retrying: 0 });
    expect(push.received.filter(mine(subscription)).map((r) => r.status)).toEqual([413]);
    expect(await metric(app, 'postbox_push_failed_total', 'reason="rejected"')).toBe(before + 1);
    // The subscription stays: a 413 says nothing about whether it exists.
    expect(await app.subscriptions(await app.token('rejected'))).toHaveLength(1);
  });

  it('an ack while a retry waits cancels the push', async () => {
    const subscription = push.subscribe();
    push.respondWith(subscription, [{ status: 503, retryAfter: 2 }]);
    const id = await pushTo('acked-meanwhile', subscription);
    await push.waitFor((all) => all.some(mine(subscription)));
    const token = await app.token('acked-meanwhile');
    // The page opened and read it: the next attempt finds the message gone.
    const reader = await openSse(app.streamUrl(token));
    await reader.waitFor(1, 10_000);
    expect(await (await app.ack(token, [id])).json()).toEqual({ acked: 1 });
    reader.close();
    expect(await finishedSend(app, 'acked-meanwhile', id, subscriptionId(subscription.endpoint))).toEqual({ result: 'gone' });
    expect(push.received.filter(mine(subscription)).map((r) => r.status)).toEqual([503]);
  });
});

describe('a push service that never answers', () => {
  it('slows neither enqueues nor SSE delivery', async () => {
    const port = (hanging.address() as AddressInfo).port;
    const slow = { endpoint: `https://127.0.0.1:${port}/push/hangs`, keys: push.subscribe().keys };
    const token = await app.token('hung-user');
    expect((await app.subscribe(token, slow)).status).toBe(201);
    // Several pushes under way, each request held open by the endpoint.
    for (let i = 0; i < 3; i += 1) await app.enqueue('hung-user', { i }, { push: { title: `hung ${i}` } });
    const deadline = Date.now() + 20_000;
    while (hung.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(hung.length).toBe(3);

    // Meanwhile another user's stream gets what is enqueued for them, and enqueues answer.
    const reader = await openSse(app.streamUrl(await app.token('reader')));
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await app.enqueue('reader', { i }, { push: { title: 'also pushable' } }));
    expect((await reader.waitFor(5, 10_000)).map((e) => e.id)).toEqual(ids);
    reader.close();
    expect(hung.length).toBe(3); // still held: nothing above waited for them
  });
});
