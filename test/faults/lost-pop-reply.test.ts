import { afterAll, beforeAll, expect, it } from 'vitest';
import type { SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { LEVEL, startLoggedApp, type LogLine } from '../helpers/start-logged-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitUntil } from '../helpers/wait-until.js';

// A pop whose reply is lost: the node holding the user's stream reaches Redis through a TCP proxy
// that holds its commands past REDIS_COMMAND_TIMEOUT_MS, then lets them through. The held pop
// runs in Redis (the message is in flight) while the node has already counted it failed.
const ACK_TIMEOUT_MS = 600_000;
let redis: TestRedis;
let proxy: TcpProxy;
let viaProxy: TestApp & { logs: () => LogLine[] };
/** The producer, straight on Redis: its enqueue wakes the other node while that node's commands are held. */
let producer: TestApp;
let reader: SseReader;

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTcpProxy({ port: redis.port });
  const settings = { ACK_TIMEOUT_MS, DRAIN_INTERVAL_MS: 50 };
  viaProxy = await startLoggedApp(proxy.url, { ...settings, REDIS_COMMAND_TIMEOUT_MS: 400 }, 'warn');
  producer = await startApp(redis.url, settings);
});
afterAll(async () => {
  proxy?.resume();
  await Promise.allSettled([viaProxy?.close(), producer?.close()]);
  await proxy?.close();
  await redis?.stop();
});

const messageIds = () => reader.events.filter((e) => !e.event.startsWith('postbox.')).map((e) => e.id);
const popFailed = () =>
  viaProxy.logs().some((l) => l.level >= LEVEL.warn && l.msg.startsWith('drain pass failed') && l.userId === 'lost-reply');

it('writes what a pop whose reply was lost took, long before its ack timeout', async () => {
  reader = await viaProxy.openStream('lost-reply');
  // The stream is joined and popped: a first message arrives through the node.
  const first = await producer.enqueue('lost-reply', { n: 0 });
  await waitUntil(() => messageIds().includes(first), 'the first message is written');

  proxy.stall('up');
  const lost = await producer.enqueue('lost-reply', { n: 1 });
  // The wake reached the node (replies still flow); its pop waits in the proxy and times out.
  await waitUntil(popFailed, 'the pop of the lost-reply user has failed');
  proxy.resume();
  // The held pop runs now and takes the message into flight; its reply goes to nobody.
  await waitUntil(async () => (await producer.counts('lost-reply')).inflight === 2, 'both messages are in flight');

  // Not at the ack timeout (ten minutes): the node reads what is in flight after the failure.
  await waitUntil(() => messageIds().includes(lost), 'the message the lost pop took is written');
  expect(messageIds().filter((id) => id === lost)).toHaveLength(1);
});
