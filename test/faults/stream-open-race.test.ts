import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitUntil } from '../helpers/wait-until.js';

// A page that leaves while its stream is still being opened: here the open waits on a
// Last-Event-ID ack (LAST_EVENT_ID_ACKS=1) to a stalled Redis, and the page gives up first.
let redis: TestRedis;
let proxy: TcpProxy;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTcpProxy({ port: redis.port });
  app = await startApp(proxy.url, { LAST_EVENT_ID_ACKS: 1, REDIS_COMMAND_TIMEOUT_MS: 300, MAX_STREAMS_PER_USER: 1 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  proxy?.resume();
  await app?.close();
  await proxy?.close();
  await redis?.stop();
});


describe('a page that leaves while its stream opens', () => {
  it('leaves no stream behind: no slot of the user taken, nothing written to it', async () => {
    const token = await app.token('leaver');
    proxy.stall();
    const controller = new AbortController();
    const pending = fetch(app.streamUrl(token), { headers: { 'last-event-id': '1-0' }, signal: controller.signal }).catch(() => undefined);
    // The request is in, its ack held in the stall; the page gives up.
    await waitUntil(() => proxy.held('up').includes('leaver'), 'the Last-Event-ID ack is waiting on Redis');
    controller.abort();
    await pending;
    proxy.resume();
    // The PING behind it is answered after the ack on the same connection: by then the route went on.
    await waitUntil(async () => (await fetch(`${app.url}/readyz`)).status === 200, 'the node is ready');
    expect(app.postbox.hub.count('leaver')).toBe(0);
    // MAX_STREAMS_PER_USER is 1: the page's next stream opens, and gets its mail.
    const reader = await openSse(app.streamUrl(token));
    readers.push(reader);
    expect(reader.status).toBe(200);
    const id = await app.enqueue('leaver', 'for the page that came back');
    const [event] = await reader.waitFor(1, 10_000);
    expect(event?.id).toBe(id);
  });
});
