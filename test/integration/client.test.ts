import { EventSource } from 'eventsource';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type {
  EventSourceConstructorLike,
  PostboxClient,
  PostboxLifecycleEvent,
  PostboxOptions,
} from '../../src/client/postbox.js';
import { importBuiltClient } from '../helpers/built-client.js';
import type { Overrides, TestApp } from '../helpers/start-app.js';
import { startNodeForTest, useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

// The compiled client (dist/client/postbox.js) with the `eventsource` package, a WHATWG
// EventSource for Node, against real nodes, a real Redis and real HTTP: nothing faked.
const { connect } = await importBuiltClient();

const CONFIG: Overrides = { ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 20 };
const node = useNode(CONFIG);
const clients: PostboxClient[] = [];

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

function start(options: Partial<PostboxOptions>, on: TestApp = node.app): PostboxClient {
  const client = connect({
    url: on.url,
    EventSource: EventSource as unknown as EventSourceConstructorLike,
    backoff: { minMs: 100, maxMs: 1000 },
    ...options,
  });
  clients.push(client);
  return client;
}

const drained = (userId: string, on: TestApp = node.app) => async () => {
  expect(await on.counts(userId)).toMatchObject({ waiting: 0, inflight: 0 });
};

const redelivered = async (on: TestApp = node.app) => (await on.metric('postbox_messages_redelivered_total')) ?? 0;

describe('client against a real server', () => {
  it('hands a message redelivered while its handler runs to that handler once, then acks it', async () => {
    const { app } = node;
    const redeliveredBefore = await redelivered();
    const client = start({ token: await app.token('slow-handler') });
    const seen: unknown[] = [];
    client.on('message', async (msg) => {
      seen.push(msg.data);
      // The handler outlasts the ack timeout: it ends only once the server has delivered the
      // message again, so the redelivery always lands while it runs.
      await waitUntil(async () => (await redelivered()) > redeliveredBefore, 'the server redelivers the message');
    });
    await app.enqueue('slow-handler', { n: 1 });
    await waitUntil(async () => (await redelivered()) > redeliveredBefore, 'the server redelivers the message');
    await waitUntil(drained('slow-handler'), 'the message is acked');
    expect(seen).toEqual([{ n: 1 }]);
  });

  it('hands each message to its handler once and acks them in a few batched requests', async () => {
    const { app } = node;
    const ids: string[] = [];
    const batch = Array.from({ length: 150 }, (_, n) => ({ userId: 'batcher', event: 'tick', data: { n } }));
    const res = await app.produce('/v1/messages', { messages: batch });
    ids.push(...((await res.json()) as { ids: string[] }).ids);
    const ackedBefore = (await app.metric('postbox_messages_acked_total')) ?? 0;
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
    // Batched, not one request per message. How many requests it takes depends on how fast the
    // messages come (a batch goes 100 ms after its first id, or at 100 ids), so a slow machine
    // may make more: the count is not asserted here; client-ack-batcher.test.ts pins the rules
    // with a fake clock.
    expect(Math.max(...ackRequests.map((r) => r.length))).toBeGreaterThan(1);
    expect(ackRequests.length).toBeLessThan(150);
    expect(await app.metric('postbox_messages_acked_total')).toBe(ackedBefore + 150);
  });

  it('does not let a reconnect ack a message whose handler threw', async () => {
    // A long ack timeout, so only the reconnect can bring the failed message back.
    const other = await startNodeForTest(node.redis, { ...CONFIG, KEY_PREFIX: 'noretry', ACK_TIMEOUT_MS: 60_000 });
    const client = start({ token: await other.token('fails-once') }, other);
    const lifecycle: PostboxLifecycleEvent[] = [];
    client.onLifecycle((event) => lifecycle.push(event));
    const calls: unknown[] = [];
    client.on('message', (msg) => {
      calls.push(msg.data);
      if (calls.length === 1) throw new Error('not now');
    });
    await other.enqueue('fails-once', 'first');
    await other.enqueue('fails-once', 'second');
    await waitUntil(() => calls.length === 2, 'both messages are handled');
    await waitUntil(async () => (await other.counts('fails-once')).inflight === 1, 'the second is acked');
    expect(lifecycle).toContainEqual(expect.objectContaining({ type: 'error', source: 'handler' }));

    // The server ends the stream. A browser reconnecting by itself would send Last-Event-ID
    // (the second message), and the server would ack the first with it.
    other.postbox.hub.closeAll('test');
    await waitUntil(() => calls.length === 3, 'the failed message comes again');
    expect(calls).toEqual(['first', 'second', 'first']);
    await waitUntil(drained('fails-once', other), 'everything is acked');
  });

  it('asks getToken for a fresh token when the server ends a stream whose token has expired', async () => {
    const { app } = node;
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

    // The node reads the same clock: once it passes `exp` (seconds), the token is dead.
    await waitUntil(() => Date.now() >= (now + 2) * 1000, 'the first token expires');
    const refused = await fetch(app.streamUrl(shortLived));
    expect(refused.status).toBe(401);
    app.postbox.hub.closeAll('test');
    await app.enqueue('refresher', 'after the refresh');
    await waitUntil(() => seen.length === 1, 'the message arrives on the new stream');
    expect(seen).toEqual(['after the refresh']);
    expect(issued).toHaveLength(2);
    expect(client.state).toBe('open');
    await waitUntil(drained('refresher'), 'the message is acked with the fresh token');
  });

  it('reconnects after a server restart and does not hand redelivered messages over again', async () => {
    const client = start({ token: await node.app.token('restarted'), autoAck: false });
    const states: string[] = [];
    client.onState((state) => states.push(state));
    const seen: string[] = [];
    client.on('message', (msg) => void seen.push(msg.id));
    const before: string[] = [];
    for (let n = 0; n < 5; n += 1) before.push(await node.app.enqueue('restarted', { n }));
    await waitUntil(() => seen.length === 5, 'five messages are handled');

    // Not acked yet (autoAck is off): in flight on a stream the restart ends.
    const app = await node.restart();
    await waitUntil(() => client.state === 'open', 'the client reconnects');
    expect(states).toEqual(expect.arrayContaining(['open', 'reconnecting']));
    await waitUntil(async () => (await redelivered(app)) >= 5, 'the restarted node delivers the five again');
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
