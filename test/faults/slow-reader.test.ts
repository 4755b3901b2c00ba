import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { waitUntil } from '../helpers/wait-until.js';

// A page that opens its stream and never reads it: a small backlog fits in the kernel's socket
// buffers (the server's writes all succeed), a big one fills them. Either way the stream must be
// closed, what was written to it must not count as deliveries, and a real page gets it all.
let redis: TestRedis;
let app: TestApp;
const sockets: Socket[] = [];
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { ACK_TIMEOUT_MS: 1000, WRITE_STALL_MS: 1000, MAX_DELIVERIES: 2, DRAIN_INTERVAL_MS: 50 });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

/** Opens the user's stream on a raw socket and never reads a byte of it. */
async function neverReads(userId: string): Promise<Socket> {
  const token = await app.token(userId);
  const { port } = new URL(app.url);
  const socket = connect({ port: Number(port), host: '127.0.0.1' });
  sockets.push(socket);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.pause();
  socket.write(`GET /v1/stream?token=${encodeURIComponent(token)} HTTP/1.1\r\nHost: postbox\r\nAccept: text/event-stream\r\n\r\n`);
  return socket;
}

interface View {
  dead: number;
  inflight: number;
  waiting: number;
  inflightMessages: Array<{ deliveries: number; attempts: number }>;
}

const view = async (userId: string) => (await (await app.admin(`/admin/queues/${userId}`)).json()) as View;


describe('a reader that never reads', () => {
  for (const [name, count, size] of [
    ['a 150 KB backlog (it fits in the socket buffers)', 150, 1000],
    ['a 1 MB backlog (it fills them)', 100, 10_000],
  ] as const) {
    it(`closes its stream with ${name}, counts no delivery, and a real page gets everything`, async () => {
      const userId = `unread-${count}`;
      const { ids } = (await (
        await app.produce('/v1/messages', {
          messages: Array.from({ length: count }, (_, i) => ({ userId, data: { i, pad: 'x'.repeat(size) } })),
        })
      ).json()) as { ids: string[] };
      await neverReads(userId);
      await waitUntil(() => app.postbox.hub.count(userId) === 1, 'the stream is open', 30_000);
      // The server closes it (unresponsive: no ack past the ack timeout; or its writes stalled).
      await waitUntil(() => app.postbox.hub.count(userId) === 0, 'the server closed the stream nobody reads', 30_000);
      const before = await view(userId);
      expect(before.dead).toBe(0);
      expect(before.inflightMessages.every((m) => m.deliveries === 0)).toBe(true);

      const reader = await openSse(app.streamUrl(await app.token(userId)));
      readers.push(reader);
      const token = await app.token(userId);
      // A page that reads and acks: it gets every message, in order.
      let acked = 0;
      // Each ack's answer, checked after the wait (a check that throws is only "not yet" to waitUntil).
      const ackStatuses: number[] = [];
      await waitUntil(async () => {
        const got = reader.events.filter((e) => e.id && !e.event.startsWith('postbox.'));
        if (got.length > acked) {
          const answer = app.ack(token, got.slice(acked).map((e) => e.id as string));
          ackStatuses.push(await answer.then((res) => res.status, () => -1)); // -1: no answer
          acked = got.length;
        }
        return acked >= count;
      }, 'the real page got everything', 30_000);
      expect(ackStatuses.filter((status) => status !== 200)).toEqual([]);
      const got = reader.events.filter((e) => e.id && !e.event.startsWith('postbox.')).map((e) => e.id);
      expect([...new Set(got)]).toEqual(ids);
      await waitUntil(async () => (await view(userId)).inflight === 0, 'everything is acked', 30_000);
      expect(await view(userId)).toMatchObject({ dead: 0, waiting: 0, inflight: 0 });
    });
  }
});
