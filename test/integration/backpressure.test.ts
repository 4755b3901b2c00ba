import { request, type IncomingMessage } from 'node:http';
import { expect, it } from 'vitest';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({
  // The default, far longer than an event-loop pause of this process at load 20 (the watchdog
  // fires in the timers phase, before pending reads run): the healthy reader below must not look
  // stalled. The stalled one is waited for, however long it takes.
  WRITE_STALL_MS: 10_000,
  MESSAGE_MAX_BYTES: 1024 * 1024,
  BODY_MAX_BYTES: 2 * 1024 * 1024,
  MAX_INFLIGHT: 20,
  ACK_TIMEOUT_MS: 60_000,
  DRAIN_INTERVAL_MS: 50,
});

it('closes a stream whose reader stops reading, and redelivers its messages on the next connection', async () => {
  const { app } = node;
  const token = await app.token('slow-reader');
  // A reader that connects and never reads: the socket buffers fill up.
  const stalled = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(app.streamUrl(token), (res) => {
      res.pause();
      resolve(res);
    });
    req.on('error', reject);
    req.end();
  });
  const big = 'x'.repeat(900 * 1024);
  const ids: string[] = [];
  for (let i = 0; i < 20; i += 1) ids.push(await app.enqueue('slow-reader', { i, big }));

  // 18 MB cannot sit in loopback socket buffers: the server gives up after WRITE_STALL_MS.
  // (The paused client does not read, so it cannot notice the close itself; ask the server.)
  await waitUntil(() => app.postbox.hub.count('slow-reader') === 0, 'the server closes the stalled stream');
  stalled.destroy();
  expect(await app.metric('postbox_streams_closed_total{reason="write stalled"}')).toBe(1);

  // A healthy reader gets every one of them, in order, with the same ids: 18 MB, which takes a
  // while on a loaded machine. Its stream was not taken for a stalled one.
  const sse = await app.openStream('slow-reader', { token });
  const events = await sse.waitFor(20, 60_000);
  expect(events.map((e) => e.id)).toEqual(ids);
  expect(await app.metric('postbox_streams_closed_total{reason="write stalled"}')).toBe(1);
  sse.close();
});
