import { EventSource } from 'eventsource';
import { SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type {
  EventSourceConstructorLike,
  PostboxClient,
  PostboxLifecycleEvent,
  PostboxOptions,
} from '../../src/client/postbox.js';
import { importBuiltClient } from '../helpers/built-client.js';
import { sleep } from '../helpers/read-sse.js';
import { startApp, type Overrides, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The compiled client (dist/client/postbox.js) with the `eventsource` package, a WHATWG
// EventSource for Node, against real nodes, a real Redis and real HTTP: nothing faked.
const { connect } = await importBuiltClient();

const CONFIG: Overrides = { ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 20 };
let redis: TestRedis;
let app: TestApp;
const clients: PostboxClient[] = [];
const extraApps: TestApp[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, CONFIG);
});
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});
afterAll(async () => {
  await Promise.all(extraApps.map((a) => a.close()));
  await app?.close();
  await redis?.stop();
});

function start(options: Partial<PostboxOptions>, on: TestApp = app): PostboxClient {
  const client = connect({
    url: on.url,
    EventSource: EventSource as unknown as EventSourceConstructorLike,
    backoff: { minMs: 100, maxMs: 1000 },
    ...options,
  });
  clients.push(client);
  return client;
}

async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

async function queueView(userId: string, on: TestApp = app): Promise<{ waiting: number; inflight: number }> {
  const res = await on.admin(`/admin/queues/${userId}`);
  if (res.status === 404) return { waiting: 0, inflight: 0 };
  return (await res.json()) as { waiting: number; inflight: number };
}

const drained = (userId: string, on: TestApp = app) => async () => {
  const view = await queueView(userId, on);
  return view.waiting === 0 && view.inflight === 0;
};

async function metric(name: string, on: TestApp = app): Promise<number> {
  const text = await (await fetch(`${on.url}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

describe('client against a real server', () => {
  it('hands a message redelivered while its handler runs to that handler once, then acks it', async () => {
    const redeliveredBefore = await metric('postbox_messages_redelivered_total');
    const client = start({ token: await app.token('slow-handler') });
    const seen: unknown[] = [];
    client.on('message', async (msg) => {
      seen.push(msg.data);
      await sleep(2500); // longer than two ack timeouts: the server delivers it again meanwhile
    });
    await app.enqueue('slow-handler', { n: 1 });
    await waitUntil(
      async () => (await metric('postbox_messages_redelivered_total')) > redeliveredBefore,
      'the server redelivers the message',
    );
    await waitUntil(drained('slow-handler'), 'the message is acked');
    expect(seen).toEqual([{ n: 1 }]);
  });

  it('hands each message to its handler once and acks them in a few batched requests', async () => {
    const ids: string[] = [];
    const batch = Array.from({ length: 150 }, (_, n) => ({ userId: 'batcher', event: 'tick', data: { n } }));
    const res = await app.produce('/v1/messages', { messages: batch });
    ids.push(...((await res.json()) as { ids: string[] }).ids);
    const ackedBefore = await metric('postbox_messages_acked_total');
    const ackRequests: string[][] = [];
    const client = start({
      token: await app.token('batcher'),
      // The real fetch, watched: how many POST /v1/acks requests carry how many ids.
      fetch: (url, init) => {
        ackRequests.push((JSON.parse(init.body) as { ids: string[] }).ids);
        return fetch(url, init);
      },
    });
    const seen: string[] = [];
    client.on('tick', (msg) => void seen.push(msg.id));
    await waitUntil(() => seen.length === 150, '150 messages are handled');
    await waitUntil(drained('batcher'), 'every message is acked');
    expect(seen).toEqual(ids);
    expect(ackRequests.flat().sort()).toEqual([...ids].sort());
    // 150 acks, at most 100 per batch (MAX_INFLIGHT 100 lets 100 through first): a handful of requests.
    expect(ackRequests.length).toBeLessThanOrEqual(5);
    expect(await metric('postbox_messages_acked_total')).toBe(ackedBefore + 150);
  });

  it('does not let a reconnect ack a message whose handler threw', async () => {
    // A long ack timeout, so only the reconnect can bring the failed message back.
    const node = await startApp(redis.url, { ...CONFIG, KEY_PREFIX: 'noretry', ACK_TIMEOUT_MS: 60_000 });
    extraApps.push(node);
    const client = start({ token: await node.token('fails-once') }, node);
    const lifecycle: PostboxLifecycleEvent[] = [];
    client.onLifecycle((event) => lifecycle.push(event));
    const calls: unknown[] = [];
    client.on('message', (msg) => {
      calls.push(msg.data);
      if (calls.length === 1) throw new Error('not now');
    });
    await node.enqueue('fails-once', 'first');
    await node.enqueue('fails-once', 'second');
    await waitUntil(() => calls.length === 2, 'both messages are handled');
    await waitUntil(async () => (await queueView('fails-once', node)).inflight === 1, 'the second is acked');
    expect(lifecycle).toContainEqual(expect.objectContaining({ type: 'error', source: 'handler' }));

    // The server ends the stream. A browser reconnecting by itself would send Last-Event-ID
    // (the second message), and the server would ack the first with it.
    node.node.hub.closeAll('test');
    await waitUntil(() => calls.length === 3, 'the failed message comes again');
    expect(calls).toEqual(['first', 'second', 'first']);
    await waitUntil(drained('fails-once', node), 'everything is acked');
  });

  it('asks getToken for a fresh token when the server ends a stream whose token has expired', async () => {
    const secret = new TextEncoder().encode(app.config.TOKEN_SECRET);
    const now = Math.floor(Date.now() / 1000);
    // Valid for 2 s: shorter than POST /v1/tokens allows, so signed here with the test secret.
    const shortLived = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject('refresher')
      .setIssuedAt(now)
      .setExpirationTime(now + 2)
      .sign(secret);
    const issued: string[] = [];
    const client = start({
      getToken: async () => {
        const token = issued.length === 0 ? shortLived : await app.token('refresher');
        issued.push(token);
        return token;
      },
    });
    const seen: unknown[] = [];
    client.on('message', (msg) => void seen.push(msg.data));
    await waitUntil(() => client.state === 'open', 'the stream opens');
    expect(issued).toEqual([shortLived]);

    await sleep(2500);
    const refused = await fetch(`${app.url}/v1/stream?token=${shortLived}`);
    expect(refused.status).toBe(401); // the first token is dead now
    app.node.hub.closeAll('test');
    await app.enqueue('refresher', 'after the refresh');
    await waitUntil(() => seen.length === 1, 'the message arrives on the new stream');
    expect(seen).toEqual(['after the refresh']);
    expect(issued).toHaveLength(2);
    expect(client.state).toBe('open');
    await waitUntil(drained('refresher'), 'the message is acked with the fresh token');
  });

  it('reconnects after a server restart and does not hand redelivered messages over again', async () => {
    const port = Number(new URL(app.url).port);
    const client = start({ token: await app.token('restarted'), autoAck: false });
    const states: string[] = [];
    client.onState((state) => states.push(state));
    const seen: string[] = [];
    client.on('message', (msg) => void seen.push(msg.id));
    const before: string[] = [];
    for (let n = 0; n < 5; n += 1) before.push(await app.enqueue('restarted', { n }));
    await waitUntil(() => seen.length === 5, 'five messages are handled');

    // Not acked yet (autoAck is off): in flight on a stream the restart ends.
    await app.close();
    app = await startApp(redis.url, { ...CONFIG, PORT: port });
    await waitUntil(() => client.state === 'open', 'the client reconnects');
    expect(states).toEqual(expect.arrayContaining(['open', 'reconnecting']));
    await waitUntil(
      async () => (await metric('postbox_messages_redelivered_total')) >= 5,
      'the restarted node delivers the five again',
    );
    expect(seen).toEqual(before);

    const after: string[] = [];
    for (let n = 5; n < 8; n += 1) after.push(await app.enqueue('restarted', { n }));
    await waitUntil(() => seen.length === 8, 'new messages arrive');
    client.ack(seen);
    await client.flushAcks();
    await waitUntil(drained('restarted'), 'everything is acked');
    expect(seen).toEqual([...before, ...after]);
  });
});
