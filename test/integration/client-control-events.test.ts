import { EventSource } from 'eventsource';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type {
  EventSourceConstructorLike,
  PostboxClient,
  PostboxCounts,
  PostboxExpired,
  PostboxMessage,
  PostboxOptions,
} from '../../src/client/postbox.js';
import { createKeys } from '../../src/queue/keys.js';
import { importBuiltClient } from '../helpers/built-client.js';
import { statusOf } from '../helpers/receipt-checks.js';
import { waitUntil } from '../helpers/wait-until.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The compiled client (as browsers get it) with a WHATWG EventSource for Node, against two real
// nodes on one real Redis: one ack clears every tab, "you missed something", counts.
const { connect } = await importBuiltClient();

const settings = { ACK_TIMEOUT_MS: 800, DRAIN_INTERVAL_MS: 50, HOUSEKEEPING_INTERVAL_MS: 300, MAX_DELIVERIES: 20 };
let redis: TestRedis;
let nodes: TestApp[];
const clients: PostboxClient[] = [];

beforeAll(async () => {
  redis = await startRedis();
  nodes = await Promise.all([startApp(redis.url, settings), startApp(redis.url, settings)]);
});
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});
afterAll(async () => {
  await Promise.allSettled((nodes ?? []).map((n) => n.close()));
  await redis?.stop();
});

const node = (i: number) => nodes[i] as TestApp;

async function start(on: TestApp, userId: string, options: Partial<PostboxOptions> = {}): Promise<PostboxClient> {
  const client = connect({
    url: on.url,
    token: await on.token(userId),
    EventSource: EventSource as unknown as EventSourceConstructorLike,
    backoff: { minMs: 100, maxMs: 1000 },
    ...options,
  });
  clients.push(client);
  return client;
}

describe('the client against real nodes', () => {
  it('hears that a tab on another node acked a message, and never hands it to a handler again', async () => {
    const first = await start(node(0), 'two-nodes');
    const second = await start(node(1), 'two-nodes', { autoAck: false });
    const handledFirst: string[] = [];
    const handledSecond: string[] = [];
    const dismissed: string[][] = [];
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The first tab handles (and acks) only once the second has the message too.
    first.on('message', async (msg: PostboxMessage) => {
      handledFirst.push(msg.id);
      await gate;
    });
    second.on('message', (msg: PostboxMessage) => void handledSecond.push(msg.id));
    second.onAcked((ids: string[]) => dismissed.push(ids));
    await waitUntil(() => first.state === 'open' && second.state === 'open', 'both tabs are open');
    await waitUntil(() => node(0).postbox.hub.count('two-nodes') === 1 && node(1).postbox.hub.count('two-nodes') === 1, 'each node holds one');

    const id = await node(0).enqueue('two-nodes', { text: 'for both tabs' });
    await waitUntil(() => handledFirst.includes(id) && handledSecond.includes(id), 'both tabs have it');
    release();
    await waitUntil(() => dismissed.some((ids) => ids.includes(id)), 'the second tab hears the ack');
    expect(await statusOf(node(1), 'two-nodes', id)).toMatchObject({ state: 'acked' });

    // Another message: only the first tab acks it; the second never handles a message twice.
    const next = await node(1).enqueue('two-nodes', { text: 'again' });
    await waitUntil(() => dismissed.some((ids) => ids.includes(next)), 'the second ack is heard');
    expect(handledSecond.filter((m) => m === id)).toHaveLength(1);
    expect(handledFirst).toEqual([id, next]);
  });

  it('tells onExpired which messages expired before it connected, and onCounts what waits', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 2; n += 1) ids.push(await node(0).enqueue('came-back', { n }, { ttlMs: 100 }));
    const kept = await node(0).enqueue('came-back', 'still here');
    const client = redis.client();
    await waitUntil(async () => (await client.get(createKeys('pb').missedCount('came-back'))) === '2', 'housekeeping noted them');

    const expired: PostboxExpired[] = [];
    const counts: PostboxCounts[] = [];
    const handled: string[] = [];
    const tab = await start(node(1), 'came-back');
    tab.onExpired((e: PostboxExpired) => expired.push(e));
    tab.onCounts((c: PostboxCounts) => counts.push(c));
    tab.on('message', (msg: PostboxMessage) => void handled.push(msg.id));
    await waitUntil(() => handled.includes(kept), 'the kept message is handled');
    expect(expired).toEqual([{ count: 2, ids }]);
    expect(counts[0]).toEqual({ waiting: 1, inflight: 0 });
  });
});
