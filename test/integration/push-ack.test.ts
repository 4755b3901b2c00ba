import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPushCredentials, PUSH_ACK_TYP } from '../../src/http/push-credentials.js';
import { createTokens } from '../../src/http/tokens.js';
import { createKeys } from '../../src/queue/keys.js';
import { startPushService, type PushSubscriptionJson, type TestPushService } from '../helpers/push-service.js';
import { openSse } from '../helpers/read-sse.js';
import { statusOf } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { startPushApp, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { startWebhookReceiver, type TestWebhookReceiver } from '../helpers/webhook-receiver.js';

let redis: TestRedis;
let push: TestPushService;
let receiver: TestWebhookReceiver;
let app: PushTestApp;

beforeAll(async () => {
  redis = await startRedis();
  push = await startPushService();
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  receiver = await startWebhookReceiver({ secret });
  app = await startPushApp(redis.url, {
    ca: push.ca,
    overrides: { PUSH_AFTER_MS: 100, WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret, WEBHOOK_BACKOFF_MS: 100 },
  });
});
afterAll(async () => {
  await app?.close();
  await receiver?.close();
  await push?.close();
  await redis?.stop();
});

/** The webhook events the receiver accepted (valid signature, answered 200) for one user. */
function webhookEvents(userId: string): Array<{ type: string; data: Record<string, unknown> }> {
  return receiver.received
    .filter((d) => d.valid && d.status === 200)
    .flatMap((d) => (d.body as { events: Array<{ type: string; data: Record<string, unknown> }> }).events)
    .filter((e) => e.data.userId === userId);
}

/** Enqueues a pushable message for a user with no stream and returns its id and the credential its push carried. */
async function pushed(userId: string, subscription: PushSubscriptionJson = push.subscribe()): Promise<{ id: string; ack: string }> {
  if ((await app.subscriptions(await app.token(userId))).length === 0) await app.subscribedUser(userId, subscription);
  const id = await app.enqueue(userId, { text: `for ${userId}` }, { push: { title: 'hello' } });
  const got = await push.waitFor((all) => all.some((r) => r.payload?.includes(`"id":"${id}"`) === true));
  const payload = JSON.parse(got.find((r) => r.payload?.includes(`"id":"${id}"`))!.payload!) as { id: string; ack: string };
  return { id: payload.id, ack: payload.ack };
}

function ackWith(credential: string, ids: string[]): Promise<Response> {
  return fetch(`${app.url}/v1/acks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ids }),
  });
}

/** Ids still in the user's mailbox (waiting or in flight), from the admin's view. */
async function held(userId: string): Promise<string[]> {
  const view = (await (await app.admin(`/admin/queues/${userId}`)).json()) as {
    oldestWaiting: Array<{ id: string }>;
    inflightMessages: Array<{ id: string }>;
  };
  return [...view.inflightMessages, ...view.oldestWaiting].map((m) => m.id).sort();
}

describe("a push's ack credential", () => {
  it('acks exactly its message, once', async () => {
    const first = await pushed('ann');
    const second = await pushed('ann');
    expect(await held('ann')).toEqual([first.id, second.id].sort());
    const res = await ackWith(first.ack, [first.id]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: 1 });
    expect(await held('ann')).toEqual([second.id]);
    // Again: nothing left to ack.
    expect(await (await ackWith(first.ack, [first.id])).json()).toEqual({ acked: 0 });
  });

  it('acks no other id: not another message of the user, not one more beside its own', async () => {
    const mineToo = await pushed('ben');
    const other = await pushed('ben');
    for (const ids of [[other.id], [mineToo.id, other.id]]) {
      const res = await ackWith(mineToo.ack, ids);
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ error: { code: 'PB_ERR_FORBIDDEN' } });
    }
    expect(await held('ben')).toEqual([mineToo.id, other.id].sort());
  });

  it("acks nothing of another user: the user comes from the credential", async () => {
    const cara = await pushed('cara');
    const dan = await pushed('dan');
    const res = await ackWith(cara.ack, [dan.id]);
    expect(res.status).toBe(403);
    expect(await held('dan')).toEqual([dan.id]);
    // Cara's credential naming Cara's id acks in Cara's mailbox only.
    expect(await (await ackWith(cara.ack, [cara.id])).json()).toEqual({ acked: 1 });
    expect(await held('dan')).toEqual([dan.id]);
  });

  it('acks nothing once expired', async () => {
    const { id } = await pushed('eve');
    // Signed as the server signs them, an hour and a second ago, with PUSH_ACK_TTL_SECONDS of an hour.
    const past = { now: () => Date.now() - 3_601_000 } as Parameters<typeof createPushCredentials>[1];
    const expired = await createPushCredentials(app.config.TOKEN_SECRET, past, 3600).issue('eve', id);
    const res = await ackWith(expired, [id]);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'PB_ERR_TOKEN_INVALID', message: 'push ack credential has expired' } });
    expect(await held('eve')).toEqual([id]);
  });

  it('is not a stream token: no stream, no nacks, no subscriptions, no producer routes', async () => {
    const { id, ack } = await pushed('fay');
    const stream = await fetch(app.streamUrl(ack));
    expect(stream.status).toBe(401);
    await stream.body?.cancel();
    const asBearer = (path: string, body: unknown) =>
      fetch(`${app.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ack}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await asBearer('/v1/nacks', { ids: [id] })).status).toBe(401);
    expect((await asBearer('/v1/push/subscriptions', push.subscribe())).status).toBe(401);
    expect((await asBearer('/v1/users/fay/messages', { data: 1 })).status).toBe(401);
    // And the stream token check itself refuses it (its signature is by another key).
    await expect(createTokens(app.config.TOKEN_SECRET, { now: () => Date.now() } as never).verify(ack)).rejects.toMatchObject({
      code: 'PB_ERR_TOKEN_INVALID',
    });
    expect(await held('fay')).toEqual([id]);
  });

  it('cannot be forged: one signed with TOKEN_SECRET itself, or another secret, is refused', async () => {
    const { id } = await pushed('gus');
    const sign = (secret: string) =>
      new SignJWT({ eid: id })
        .setProtectedHeader({ alg: 'HS256', typ: PUSH_ACK_TYP })
        .setSubject('gus')
        .setAudience('postbox:push-ack')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(secret));
    for (const forged of [await sign(app.config.TOKEN_SECRET), await sign('another-secret-0123456789-0123456789')]) {
      expect((await ackWith(forged, [id])).status).toBe(401);
    }
    expect(await held('gus')).toEqual([id]);
  });

  it('clears the message everywhere: an open tab is told it was acked', async () => {
    const { id, ack } = await pushed('hal');
    const reader = await openSse(app.streamUrl(await app.token('hal')));
    await reader.waitFor(1, 10_000);
    expect(await (await ackWith(ack, [id])).json()).toEqual({ acked: 1 });
    const [, control] = await reader.waitFor(2, 10_000);
    reader.close();
    expect(control).toMatchObject({ id: undefined, event: 'postbox.acked' });
    expect(JSON.parse(control!.data)).toEqual({ ids: [id] });
  });

  it('leaves a receipt and sends message.acked, as any ack does, for a message that was only pushed', async () => {
    const { id, ack } = await pushed('ivy');
    expect(await statusOf(app, 'ivy', id)).toMatchObject({ id, state: 'waiting' });
    expect(await (await ackWith(ack, [id])).json()).toEqual({ acked: 1 });
    const status = await statusOf(app, 'ivy', id);
    // Never written to a stream: no attempts, no first delivery; the click is the one delivery.
    expect(status).toMatchObject({ id, state: 'acked', deliveries: 1, attempts: 0 });
    expect(status).toHaveProperty('ackedAt');
    expect(status).not.toHaveProperty('firstDeliveredAt');
    await waitUntil(() => webhookEvents('ivy').some((e) => e.type === 'message.acked'), 'the receiver has message.acked');
    expect(webhookEvents('ivy')).toEqual([
      expect.objectContaining({ type: 'message.acked', data: expect.objectContaining({ id, userId: 'ivy', state: 'acked' }) }),
    ]);
  });

  it('leaves the receipt of a message in flight on a stream, with its write, and clears its first write', async () => {
    const { id, ack } = await pushed('jon');
    const reader = await openSse(app.streamUrl(await app.token('jon')));
    await reader.waitFor(1, 10_000);
    expect(await statusOf(app, 'jon', id)).toMatchObject({ id, state: 'inflight', attempts: 1 });
    expect(await (await ackWith(ack, [id])).json()).toEqual({ acked: 1 });
    reader.close();
    const status = await statusOf(app, 'jon', id);
    expect(status).toMatchObject({ id, state: 'acked', deliveries: 1, attempts: 1 });
    expect(status).toHaveProperty('firstDeliveredAt');
    expect(await redis.client().hexists(createKeys(app.config.KEY_PREFIX).firstWrites('jon'), id)).toBe(0);
    await waitUntil(() => webhookEvents('jon').some((e) => e.type === 'message.acked' && e.data.id === id), 'the receiver has message.acked');
  });
});
