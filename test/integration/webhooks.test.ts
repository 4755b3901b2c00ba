import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { userChannel } from '../../src/delivery/wake.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createKeys } from '../../src/queue/keys.js';
import { createMailbox } from '../../src/queue/mailbox.js';
import { receiptSpec } from '../../src/queue/receipts.js';
import { failUntilDead } from '../helpers/dead-letters.js';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { metric, statusOf } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { freePort, startRedis, type TestRedis } from '../helpers/start-redis.js';
import { startWebhookReceiver, type TestWebhookReceiver, type WebhookDelivery } from '../helpers/webhook-receiver.js';

// Webhooks end to end: real nodes, a real Redis, a real HTTP receiver verifying the signatures
// with the standardwebhooks library.
interface Event {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown> & { userId: string; id: string; state: string };
}

const secret = `whsec_${randomBytes(24).toString('base64')}`;
const settings = {
  WEBHOOK_SECRET: secret,
  WEBHOOK_BACKOFF_MS: 100,
  WEBHOOK_MAX_ATTEMPTS: 8,
  WEBHOOK_TIMEOUT_MS: 30_000,
  ACK_TIMEOUT_MS: 600,
  DRAIN_INTERVAL_MS: 50,
  MAX_DELIVERIES: 2,
  HOUSEKEEPING_INTERVAL_MS: 300,
};
let redis: TestRedis;
let receiver: TestWebhookReceiver;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  receiver = await startWebhookReceiver({ secret });
  app = await startApp(redis.url, { ...settings, WEBHOOK_URL: `${receiver.url}/hooks?source=postbox` });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await receiver?.close();
  await redis?.stop();
});

const eventsOf = (d: WebhookDelivery): Event[] => ((d.body as { events?: Event[] }).events ?? []);
/** Deliveries the receiver accepted (valid signature, answered 200), once per webhook-id: what a deduping receiver keeps. */
function accepted(): WebhookDelivery[] {
  const seen = new Set<string>();
  return receiver.received.filter((d) => {
    if (!d.valid || d.status !== 200 || d.id === undefined || seen.has(d.id)) return false;
    seen.add(d.id);
    return true;
  });
}
const acceptedEvents = (userId: string) => accepted().flatMap(eventsOf).filter((e) => e.data.userId === userId);

async function stream(on: TestApp, userId: string): Promise<SseReader> {
  const reader = await openSse(on.streamUrl(await on.token(userId)));
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}
const messageIds = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.')).map((e) => e.id as string);

async function ack(on: TestApp, userId: string, ids: string[]): Promise<number> {
  return ((await (await on.ack(await on.token(userId), ids)).json()) as { acked: number }).acked;
}

interface Stats {
  webhooks: {
    enabled: boolean;
    endpoint: string | null;
    events: string[];
    batches: { waiting: number; retrying: number; active: number; failed: number };
    totals: { queued: number; delivered: number; failed: number; dropped: number };
    lastDeliveredAt: string | null;
    lastFailure: { at: string; error: string } | null;
  };
}
const stats = async (on: TestApp = app) => ((await (await on.admin('/admin/stats')).json()) as Stats).webhooks;
const settled = (on: TestApp = app) => async () => {
  const { batches } = await stats(on);
  return batches.waiting + batches.retrying + batches.active === 0;
};

describe('webhooks', () => {
  it('POSTs acked events in signed batches of at most 100, each with its stable ids', async () => {
    const ids = await Promise.all(Array.from({ length: 150 }, (_, i) => app.enqueue('wh-batch', i)));
    const tab = await stream(app, 'wh-batch');
    // MAX_INFLIGHT is 100: ack 50 at a time as they are written.
    for (let i = 0; i < 150; i += 50) {
      await waitUntil(() => messageIds(tab).length >= i + 50, `${i + 50} are written`);
      expect(await ack(app, 'wh-batch', ids.slice(i, i + 50))).toBe(50);
    }
    await waitUntil(() => acceptedEvents('wh-batch').length >= 150, 'the receiver has 150 events');

    const events = acceptedEvents('wh-batch');
    expect(events.map((e) => e.data.id).sort()).toEqual([...ids].sort());
    const carrying = receiver.received.filter((d) => eventsOf(d).some((e) => e.data.userId === 'wh-batch'));
    for (const d of carrying) {
      expect(d.valid, d.error).toBe(true);
      expect(d.path).toBe('/hooks');
      expect(d.id).toMatch(/^msg_b-[A-Za-z0-9_-]{32}$/);
      expect(eventsOf(d).length).toBeLessThanOrEqual(100);
    }
    // Three acks of 50 make at most three batches: events wait for one another (100, or 1 s).
    expect(new Set(carrying.map((d) => d.id)).size).toBeLessThanOrEqual(3);
    const [one] = events;
    expect(one).toMatchObject({ id: `wh-batch/${one?.data.id}/message.acked`, type: 'message.acked' });
    expect(one?.data).toMatchObject({ userId: 'wh-batch', state: 'acked' });
    // Once each, unless a loaded machine let an ack timeout pass first (then it was written again).
    expect(one?.data.attempts).toBeGreaterThanOrEqual(1);
    expect(one?.data.deliveries).toBeGreaterThanOrEqual(1);
    expect(Date.parse(one?.data.ackedAt as string)).toBeGreaterThanOrEqual(Date.parse(one?.data.firstDeliveredAt as string));
    expect(one?.timestamp).toBe(one?.data.ackedAt);
    tab.close();
  });

  it('sends a batch the receiver answered 500 again, with the same webhook-id and events', async () => {
    await waitUntil(settled(), 'no batch is pending');
    const before = await metric(app, 'postbox_webhooks_requests_total{result="5xx"}');
    receiver.respondWith([500, 500]);
    const id = await app.enqueue('wh-500', 'refused twice');
    const tab = await stream(app, 'wh-500');
    await waitUntil(() => messageIds(tab).length === 1, 'written');
    expect(await ack(app, 'wh-500', [id])).toBe(1);
    await waitUntil(() => acceptedEvents('wh-500').length === 1, 'the event is accepted');

    const tries = receiver.received.filter((d) => eventsOf(d).some((e) => e.data.id === id));
    expect(tries.map((d) => d.status)).toEqual([500, 500, 200]);
    expect(new Set(tries.map((d) => d.id)).size).toBe(1);
    expect(tries.every((d) => d.valid)).toBe(true);
    expect(new Set(tries.map((d) => JSON.stringify(eventsOf(d))))).toHaveProperty('size', 1);
    expect(await metric(app, 'postbox_webhooks_requests_total{result="5xx"}')).toBe(before + 2);
    tab.close();
  });

  it("waits before the next try as long as a 429's or 503's Retry-After asks, an hour at most", async () => {
    await waitUntil(settled(), 'no batch is pending');
    receiver.respondWith([{ status: 429, retryAfter: 2 }, { status: 503, retryAfter: 7200 }]);
    const id = await app.enqueue('wh-later', 'not now');
    const tab = await stream(app, 'wh-later');
    await waitUntil(() => messageIds(tab).length === 1, 'written');
    expect(await ack(app, 'wh-later', [id])).toBe(1);
    const tries = () => receiver.received.filter((d) => eventsOf(d).some((e) => e.data.id === id));
    await waitUntil(() => tries().length === 2, 'the second try', 30_000);
    // WEBHOOK_BACKOFF_MS is 100: the second try came no sooner than the 429 said.
    const [first, second] = tries() as [WebhookDelivery, WebhookDelivery];
    expect(second.receivedAt - first.receivedAt).toBeGreaterThanOrEqual(2000);
    // Two hours asked: the batch waits an hour. Promoted here, so the test need not wait.
    const queue = app.queue('webhooks') as Queue<{ events: Event[] }>;
    const waitingBatch = async () => (await queue.getDelayed()).find((j) => j.data.events.some((e) => e.data.id === id));
    await waitUntil(async () => (await waitingBatch()) !== undefined, 'the batch waits');
    const job = await waitingBatch();
    expect(job?.delay).toBe(3_600_000);
    await job?.promote();
    await waitUntil(() => acceptedEvents('wh-later').length === 1, 'the event is accepted');
    expect(tries().map((d) => d.status)).toEqual([429, 503, 200]);
    tab.close();
  });

  it('redelivers once the receiver is back after being down, and a receiver deduping by webhook-id sees each event once', async () => {
    await waitUntil(settled(), 'no batch is pending');
    const failuresBefore = await metric(app, 'postbox_webhooks_requests_total{result="error"}');
    await receiver.stop();
    const id = await app.enqueue('wh-down', 'while the receiver is down');
    const tab = await stream(app, 'wh-down');
    await waitUntil(() => messageIds(tab).length === 1, 'written');
    expect(await ack(app, 'wh-down', [id])).toBe(1);
    await waitUntil(async () => (await metric(app, 'postbox_webhooks_requests_total{result="error"}')) > failuresBefore, 'a POST failed');
    expect((await stats()).lastFailure?.error).toMatch(/request failed/);
    await receiver.start();
    await waitUntil(() => acceptedEvents('wh-down').length === 1, 'the event arrives');
    expect(acceptedEvents('wh-down')[0]).toMatchObject({ type: 'message.acked', data: { id, state: 'acked' } });

    // Every event so far, deduped by webhook-id as a receiver would: none twice.
    const all = accepted().flatMap(eventsOf).map((e) => e.id);
    expect(all.length).toBeGreaterThanOrEqual(152);
    expect(new Set(all).size).toBe(all.length);
    const s = await stats();
    expect(s).toMatchObject({ enabled: true, endpoint: `${receiver.url}/hooks`, events: ['message.acked', 'message.dead', 'message.expired'] });
    expect(s.totals.delivered).toBeGreaterThanOrEqual(152);
    expect(s.totals.queued).toBeGreaterThanOrEqual(s.totals.delivered);
    expect(s.lastDeliveredAt).not.toBeNull();
    tab.close();
  });

  it('delays nothing while the receiver hangs: messages are delivered and acked, and the webhook comes after release', async () => {
    await waitUntil(settled(), 'no batch is pending');
    receiver.hang();
    const held = receiver.received.length;
    try {
      const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => app.enqueue('wh-hang', i)));
      const tab = await stream(app, 'wh-hang');
      await waitUntil(() => messageIds(tab).length === 20, 'all 20 are written');
      expect(await ack(app, 'wh-hang', ids)).toBe(20);
      // The webhook is under way and held by the receiver...
      await waitUntil(() => receiver.received.slice(held).some((d) => eventsOf(d).some((e) => e.data.userId === 'wh-hang')), 'the POST reached the receiver');
      // ...and everything else goes on: more messages, written, acked, their status read.
      const more = await app.enqueue('wh-hang', 'after the hang');
      await waitUntil(() => messageIds(tab).includes(more), 'a new message is written');
      expect(await ack(app, 'wh-hang', [more])).toBe(1);
      for (const id of [...ids, more]) expect(await statusOf(app, 'wh-hang', id)).toMatchObject({ state: 'acked' });
      expect(acceptedEvents('wh-hang')).toHaveLength(0);
      tab.close();
    } finally {
      receiver.release();
    }
    await waitUntil(() => acceptedEvents('wh-hang').length === 21, 'the events arrive after the release');
  });

  it('fires message.dead and message.expired from the scripts that dead-letter and expire', async () => {
    const doomed = await app.enqueue('wh-dead', 'fails every time');
    await failUntilDead(app, 'wh-dead', 1);
    await waitUntil(() => acceptedEvents('wh-dead').some((e) => e.type === 'message.dead'), 'message.dead arrives');
    expect(acceptedEvents('wh-dead').find((e) => e.type === 'message.dead')).toMatchObject({
      id: `wh-dead/${doomed}/message.dead`,
      data: { id: doomed, state: 'dead', reason: 'max-deliveries', deliveries: 2 },
    });
    // Nobody connected: housekeeping drops it, and its script writes the event.
    const brief = await app.enqueue('wh-expired', 'brief', { ttlMs: 100 });
    await waitUntil(() => acceptedEvents('wh-expired').length === 1, 'message.expired arrives');
    expect(acceptedEvents('wh-expired')[0]).toMatchObject({
      type: 'message.expired',
      data: { id: brief, state: 'expired', attempts: 0, deliveries: 0 },
    });
    expect(acceptedEvents('wh-expired')[0]?.data.firstDeliveredAt).toBeUndefined();
  });

  it('moves events a stopped node left in an outbox, once their lock runs out, through the housekeeping sweep', async () => {
    const client = redis.client();
    const keys = createKeys('pb');
    // A node with webhooks on that stops before moving its events: its scripts ran, nothing told an outbox.
    const gone = createMailbox({
      redis: client,
      clock: systemClock,
      metrics: createMetrics(),
      options: {
        keyPrefix: 'pb',
        queueMaxLength: 100,
        dedupWindowMs: 60_000,
        ackTimeoutMs: 600,
        maxInflight: 10,
        maxDeliveries: 2,
        maxAttempts: 8,
        deadMaxLength: 10,
        retryAfterSeconds: 1,
        leaseMs: 3000,
        nodeId: 'stopped-node',
        userChannel: userChannel('pb'),
        receiptSpec: receiptSpec({ retentionMs: 60_000, maxPerUser: 100, webhookEvents: ['message.acked'] }),
      },
    });
    const { id } = await gone.enqueue({ userId: 'wh-orphan', event: 'message', data: '"left behind"' });
    await gone.pop(['wh-orphan']);
    expect((await gone.ack('wh-orphan', [id])).acked).toEqual([id]);
    // It stopped while taking them: its lock holds the others off until it runs out.
    await client.set(keys.outboxLock('wh-orphan'), 'stopped-node', 'PX', 1000);
    expect(await client.xlen(keys.outbox('wh-orphan'))).toBe(1);
    await waitUntil(() => acceptedEvents('wh-orphan').length === 1, 'the sweep moved the event', 20_000);
    expect(acceptedEvents('wh-orphan')[0]).toMatchObject({ type: 'message.acked', data: { id, attempts: 1, deliveries: 1 } });
    await waitUntil(async () => (await client.exists(keys.outbox('wh-orphan'))) === 0, 'the outbox is deleted');
  });
});

describe('webhooks, other settings', () => {
  it('sends message.delivered once per message when WEBHOOK_EVENTS asks for it', async () => {
    const node = await startApp(redis.url, {
      ...settings,
      KEY_PREFIX: 'whd',
      WEBHOOK_URL: receiver.url,
      WEBHOOK_EVENTS: 'message.delivered,message.acked',
    });
    try {
      const id = await node.enqueue('wh-first', 'written twice');
      const first = await stream(node, 'wh-first');
      await waitUntil(() => messageIds(first).length === 1, 'the first write');
      first.close();
      await waitUntil(() => node.postbox.hub.count('wh-first') === 0, 'closed');
      const second = await stream(node, 'wh-first');
      await waitUntil(() => messageIds(second).length === 1, 'the second write');
      expect(await ack(node, 'wh-first', [id])).toBe(1);
      await waitUntil(() => acceptedEvents('wh-first').some((e) => e.type === 'message.acked'), 'the ack event arrives');
      await waitUntil(settled(node), 'nothing more is pending');
      expect(await redis.client().exists(createKeys('whd').outbox('wh-first'))).toBe(0);
      const events = acceptedEvents('wh-first');
      expect(events.map((e) => e.type).sort()).toEqual(['message.acked', 'message.delivered']);
      const delivered = events.find((e) => e.type === 'message.delivered');
      expect(delivered?.data).toMatchObject({ id, state: 'inflight', attempts: 1 });
      expect(events.find((e) => e.type === 'message.acked')?.data).toMatchObject({ attempts: 2 });
      // The same first write, read back on Redis's clock (whole ms) by each script.
      const firstAcked = Date.parse(events.find((e) => e.type === 'message.acked')?.data.firstDeliveredAt as string);
      expect(Math.abs(firstAcked - Date.parse(delivered?.data.firstDeliveredAt as string))).toBeLessThanOrEqual(2);
      second.close();
    } finally {
      await node.close();
    }
  });

  it('gives a batch up after WEBHOOK_MAX_ATTEMPTS tries, keeps it among the failed jobs and counts its events', async () => {
    const closedPort = await freePort();
    const node = await startApp(redis.url, {
      ...settings,
      KEY_PREFIX: 'whf',
      WEBHOOK_URL: `http://127.0.0.1:${closedPort}/gone`,
      WEBHOOK_MAX_ATTEMPTS: 3,
      WEBHOOK_BACKOFF_MS: 50,
    });
    try {
      const id = await node.enqueue('wh-given-up', 'nobody listens');
      const tab = await stream(node, 'wh-given-up');
      await waitUntil(() => messageIds(tab).length === 1, 'written');
      expect(await ack(node, 'wh-given-up', [id])).toBe(1);
      await waitUntil(async () => (await stats(node)).totals.failed === 1, 'the batch is given up');
      const s = await stats(node);
      expect(s.batches).toMatchObject({ failed: 1, waiting: 0, retrying: 0 });
      expect(s.lastFailure?.error).toMatch(/request failed/);
      expect(await metric(node, 'postbox_webhooks_events_failed_total')).toBe(1);
      expect(await metric(node, 'postbox_webhooks_requests_total{result="error"}')).toBe(3);
      const [job] = await (node.postbox.queues.find((q) => q.name === 'webhooks') as Queue).getFailed();
      expect(job?.attemptsMade).toBe(3);
      expect((job?.data as { events: Event[] }).events).toEqual([expect.objectContaining({ id: `wh-given-up/${id}/message.acked` })]);
      tab.close();
    } finally {
      await node.close();
    }
  });

  it('drops and counts new events once WEBHOOK_MAX_BACKLOG batches wait, so a dead receiver cannot grow Redis', async () => {
    const closedPort = await freePort();
    const node = await startApp(redis.url, {
      ...settings,
      KEY_PREFIX: 'whb',
      WEBHOOK_URL: `http://127.0.0.1:${closedPort}/nobody`,
      WEBHOOK_MAX_BACKLOG: 2,
      WEBHOOK_BACKOFF_MS: 60_000,
    });
    try {
      const res = await node.produce('/v1/messages', {
        messages: Array.from({ length: 500 }, (_, n) => ({ userId: 'wh-flood', data: n })),
      });
      const ids = ((await res.json()) as { ids: string[] }).ids;
      const tab = await stream(node, 'wh-flood');
      // MAX_INFLIGHT is 100: ack what arrives until all 500 are acked.
      let acked = 0;
      await waitUntil(async () => {
        const written = messageIds(tab).filter((id) => ids.includes(id));
        const fresh = written.slice(acked);
        if (fresh.length > 0) acked += await ack(node, 'wh-flood', fresh);
        return acked === 500;
      }, 'all 500 are acked');
      await waitUntil(async () => (await stats(node)).totals.queued + (await stats(node)).totals.dropped >= 500, 'every event is queued or dropped');
      const s = await stats(node);
      expect(s.totals.dropped).toBeGreaterThan(0);
      expect(s.totals.queued + s.totals.dropped).toBe(500);
      // At most two batches of 100 (plus one being sent) are held for the receiver.
      expect(s.batches.waiting + s.batches.retrying + s.batches.active).toBeLessThanOrEqual(3);
      expect(s.totals.queued).toBeLessThanOrEqual(300);
      expect(await metric(node, 'postbox_webhooks_events_dropped_total{reason="backlog"}')).toBe(s.totals.dropped);
      expect(await metric(node, 'postbox_webhooks_backlog_batches')).toBeLessThanOrEqual(3);
      tab.close();
    } finally {
      await node.close();
    }
  });
});
