import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushCheckJobId } from '../../src/queue/push-jobs.js';
import { finishedCheck, pushQueue } from '../helpers/push-jobs.js';
import { startPushService, type PushSubscriptionJson, type ReceivedPush, type TestPushService } from '../helpers/push-service.js';
import { startPushApp, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The `push` option on every way in: a batch, a scheduled message, a room message.
const PUSH_AFTER_MS = 200;
let redis: TestRedis;
let push: TestPushService;
let app: PushTestApp;

beforeAll(async () => {
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { PUSH_AFTER_MS } });
});
afterAll(async () => {
  await app?.close();
  await push?.close();
  await redis?.stop();
});

const mine = (subscription: PushSubscriptionJson) => (r: ReceivedPush) => r.subscriptionId === push.idOf(subscription);
const payloadOf = (r: ReceivedPush) => JSON.parse(r.payload ?? '{}') as { id: string; title: string };

describe('the push option', () => {
  it('in a batch applies to the messages that carry it', async () => {
    const subscription = push.subscribe();
    await app.subscribedUser('batch-user', subscription);
    const res = await app.produce('/v1/messages', {
      messages: [
        { userId: 'batch-user', data: 1 },
        { userId: 'batch-user', data: 2, push: { title: 'second' } },
        { userId: 'never-subscribed', data: 3, push: { title: 'to nobody' } },
      ],
    });
    expect(res.status).toBe(201);
    const { ids } = (await res.json()) as { ids: [string, string, string] };
    // A user with no subscription costs no push job at all.
    expect(await pushQueue(app).getJob(pushCheckJobId('never-subscribed', ids[2]))).toBeUndefined();
    expect(await finishedCheck(app, 'batch-user', ids[1])).toMatchObject({ result: 'pushed', sent: 1 });
    expect(await pushQueue(app).getJob(pushCheckJobId('batch-user', ids[0]))).toBeUndefined();
    expect(push.received.filter(mine(subscription)).map((r) => payloadOf(r).id)).toEqual([ids[1]]);
  });

  it('of a scheduled message is planned when the message enters the mailbox', async () => {
    const subscription = push.subscribe();
    await app.subscribedUser('later-user', subscription);
    const before = Date.now();
    const res = await app.produce('/v1/users/later-user/messages', { data: 'later', delayMs: 500, push: { title: 'later' } });
    expect(res.status).toBe(202);
    const [got] = (await push.waitFor((all) => all.some(mine(subscription)))).filter(mine(subscription));
    expect(payloadOf(got!).title).toBe('later');
    // Due at delayMs, then PUSH_AFTER_MS in the mailbox.
    expect(got!.receivedAt - before).toBeGreaterThanOrEqual(500 + PUSH_AFTER_MS);
  });

  it('of a room message applies to every member’s copy, except the sender’s when excepted', async () => {
    const member = push.subscribe();
    const sender = push.subscribe();
    await app.subscribedUser('room-member', member);
    await app.subscribedUser('room-sender', sender);
    for (const user of ['room-member', 'room-sender']) expect((await app.call('PUT', `/v1/rooms/pushroom/members/${user}`)).status).toBe(204);
    const res = await app.produce('/v1/rooms/pushroom/messages', {
      data: { text: 'to the room' },
      exceptUserId: 'room-sender',
      push: { title: '#pushroom', body: 'to the room' },
    });
    expect(res.status).toBe(202);
    const [got] = (await push.waitFor((all) => all.some(mine(member)))).filter(mine(member));
    expect(payloadOf(got!).title).toBe('#pushroom');
    expect(await finishedCheck(app, 'room-member', payloadOf(got!).id)).toMatchObject({ result: 'pushed', sent: 1 });
    expect(push.received.filter(mine(sender))).toEqual([]);
  });

  it('is refused when it could not fit a push, or names a bad urgency or topic', async () => {
    for (const push of [
      { title: '' },
      { title: 't', body: 'x'.repeat(1001) },
      { title: '😀'.repeat(100), body: '😀'.repeat(500) }, // within the lengths, over 2048 bytes as JSON
      { title: 't', urgency: 'urgent' },
      { title: 't', topic: 'has spaces' },
      { title: 't', topic: 'x'.repeat(33) },
      { title: 't', icon: 'not a field' },
    ]) {
      const res = await app.produce('/v1/users/refused/messages', { data: 1, push });
      expect(res.status, JSON.stringify(push)).toBe(400);
    }
  });
});
