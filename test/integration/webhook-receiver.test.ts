import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhookReceiver, type TestWebhookReceiver, type WebhookDelivery } from '../helpers/webhook-receiver.js';

const secret = `whsec_${randomBytes(24).toString('base64')}`;
let receiver: TestWebhookReceiver;
let seq = 0;

beforeAll(async () => {
  receiver = await startWebhookReceiver({ secret });
});
afterAll(async () => {
  await receiver?.close();
});

interface Delivery {
  id: string;
  payload: string;
  send: Promise<Response>;
}

/** Signs like a Standard Webhooks sender and POSTs; `body` replaces the signed payload to tamper with it. */
function deliver(event: unknown, options: { body?: string; key?: string; signal?: AbortSignal } = {}): Delivery {
  seq += 1;
  const id = `msg_${seq}`;
  const payload = JSON.stringify(event);
  const date = new Date();
  const signature = new Webhook(options.key ?? secret).sign(id, date, payload);
  const send = fetch(`${receiver.url}/hooks/postbox`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(date.getTime() / 1000)),
      'webhook-signature': signature,
    },
    body: options.body ?? payload,
    signal: options.signal,
  });
  return { id, payload, send };
}

function deliveryOf(id: string): Promise<WebhookDelivery> {
  return receiver.waitFor((all) => all.some((d) => d.id === id)).then((all) => all.find((d) => d.id === id)!);
}

describe('startWebhookReceiver', () => {
  it('records a validly signed delivery with its id, timestamp and parsed body, and answers 200', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { id, send } = deliver({ type: 'message.acked', data: { userId: '42' } });
    expect((await send).status).toBe(200);
    const got = await deliveryOf(id);
    expect(got).toMatchObject({ id, valid: true, status: 200, path: '/hooks/postbox', body: { type: 'message.acked', data: { userId: '42' } } });
    expect(got.timestamp).toBeGreaterThanOrEqual(before);
    expect(got.error).toBeUndefined();
  });

  it('records a tampered body, or one signed with another secret, as invalid and answers 400', async () => {
    const tampered = deliver({ type: 'message.dead', n: 1 }, { body: JSON.stringify({ type: 'message.dead', n: 2 }) });
    expect((await tampered.send).status).toBe(400);
    expect(await deliveryOf(tampered.id)).toMatchObject({ valid: false, status: 400, body: { n: 2 } });
    expect((await deliveryOf(tampered.id)).error).toMatch(/signature/i);

    const stranger = deliver({ type: 'message.dead' }, { key: `whsec_${randomBytes(24).toString('base64')}` });
    expect((await stranger.send).status).toBe(400);
    expect(await deliveryOf(stranger.id)).toMatchObject({ valid: false, status: 400 });
  });

  it('answers a plan of statuses in order to valid deliveries, then 200; invalid ones do not use it', async () => {
    receiver.respondWith([500, { status: 429, retryAfter: 3 }, 503]);
    const first = await deliver({ n: 1 }).send;
    expect(first.status).toBe(500);
    const invalid = deliver({ n: 2 }, { body: '{"n":-2}' });
    expect((await invalid.send).status).toBe(400);
    const second = await deliver({ n: 3 }).send;
    expect([second.status, second.headers.get('retry-after')]).toEqual([429, '3']);
    expect((await deliver({ n: 4 }).send).status).toBe(503);
    expect((await deliver({ n: 5 }).send).status).toBe(200);
  });

  it('holds requests while hanging and answers them on release', async () => {
    receiver.respondWith([500]);
    receiver.hang();
    const a = deliver({ held: 'a' });
    const b = deliver({ held: 'b' });
    const [heldA, heldB] = [await deliveryOf(a.id), await deliveryOf(b.id)];
    // Recorded on arrival, not answered.
    expect([heldA.status, heldB.status]).toEqual([undefined, undefined]);
    receiver.release();
    const answers = await Promise.all([a.send, b.send]);
    // In arrival order: whichever came first gets the planned 500.
    const order = [heldA, heldB].sort((x, y) => receiver.received.indexOf(x) - receiver.received.indexOf(y));
    expect(order.map((d) => d.status)).toEqual([500, 200]);
    expect(answers.map((r) => r.status).sort()).toEqual([200, 500]);
    expect((await deliver({ after: 'release' }).send).status).toBe(200);
  });

  it('spends no planned status on a held request whose client gave up', async () => {
    receiver.respondWith([502]);
    receiver.hang();
    const abort = new AbortController();
    const quitter = deliver({ quits: true }, { signal: abort.signal });
    await deliveryOf(quitter.id);
    abort.abort();
    await expect(quitter.send).rejects.toThrow();
    await receiver.waitFor((all) => all.some((d) => d.id === quitter.id && d.closedBeforeAnswer));
    receiver.release();
    expect((await deliveryOf(quitter.id)).status).toBeUndefined();
    expect((await deliver({ next: true }).send).status).toBe(502);
  });

  it('is down after stop (refused, held requests dropped) and up again on the same port after start', async () => {
    const port = receiver.port;
    receiver.hang();
    const held = deliver({ when: 'going down' });
    await deliveryOf(held.id);
    await receiver.stop();
    await expect(held.send).rejects.toThrow();
    expect((await deliveryOf(held.id)).closedBeforeAnswer).toBe(true);
    receiver.release();

    await expect(deliver({ when: 'down' }).send).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } });
    await receiver.start();
    expect(receiver.port).toBe(port);
    expect(receiver.url).toBe(`http://127.0.0.1:${port}`);
    const back = deliver({ when: 'up' });
    expect((await back.send).status).toBe(200);
    expect(await deliveryOf(back.id)).toMatchObject({ valid: true, status: 200 });
  });
});
