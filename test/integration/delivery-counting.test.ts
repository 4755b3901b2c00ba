import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// What counts as a delivery: a missed ack counts only when the page had the message and did not
// handle it (it reported a failure, or acked other messages meanwhile). Writes that cannot have
// reached a handler (a reconnect, a stream nobody reads) are attempts, bounded by MAX_ATTEMPTS.
let redis: TestRedis;
let app: TestApp;
/** MAX_ATTEMPTS 4, for the one test about it; `app` keeps the default (4 × MAX_DELIVERIES). */
let strict: TestApp;
let optIn: TestApp;
const readers: SseReader[] = [];

const settings = { ACK_TIMEOUT_MS: 600, DRAIN_INTERVAL_MS: 50, MAX_DELIVERIES: 3 };

beforeAll(async () => {
  redis = await startRedis();
  [app, strict, optIn] = await Promise.all([
    startApp(redis.url, settings),
    startApp(redis.url, { ...settings, KEY_PREFIX: 'strict', MAX_ATTEMPTS: 4 }),
    startApp(redis.url, { ...settings, KEY_PREFIX: 'optin', LAST_EVENT_ID_ACKS: 1 }),
  ]);
});
afterAll(async () => {
  for (const r of readers) r.close();
  await Promise.allSettled([app?.close(), strict?.close(), optIn?.close()]);
  await redis?.stop();
});

/**
 * A page that stays open: every message it gets goes to `handle`; when the server closes the
 * stream (on a busy machine a page can miss an ack timeout and look unresponsive), it opens a
 * new one, as EventSource does. Runs until `done()` or the deadline.
 */
async function page(
  node: TestApp,
  userId: string,
  handle: (id: string) => Promise<void>,
  done: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reader = await open(node, userId);
    let handled = 0;
    let ended = false;
    void reader.ended.then(() => (ended = true));
    while (!ended && Date.now() < deadline) {
      const got = messages(reader);
      for (; handled < got.length; handled += 1) await handle(got[handled]!.id!);
      if (await done()) return reader.close();
      await sleep(20);
    }
    reader.close();
  }
  throw new Error(`page of ${userId}: not done within ${timeoutMs} ms`);
}

async function open(node: TestApp, userId: string, lastEventId?: string): Promise<SseReader> {
  const token = await node.token(userId);
  const reader = await openSse(node.streamUrl(token), lastEventId === undefined ? {} : { lastEventId });
  expect(reader.status).toBe(200);
  readers.push(reader);
  return reader;
}

async function waitUntil<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; last: ${JSON.stringify(value)}`);
    await sleep(50);
  }
}

interface View {
  waiting: number;
  inflight: number;
  dead: number;
  inflightMessages: Array<{ id: string; deliveries: number; attempts: number }>;
  deadLetters: Array<{ id: string; deliveries: number; attempts: number; reason: string }>;
}
const view = async (node: TestApp, userId: string) => (await (await node.admin(`/admin/queues/${userId}`)).json()) as View;
const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));

describe('what counts as a delivery', () => {
  it('redelivers a message whose handler failed, with the same id, and dead-letters it after MAX_DELIVERIES failures', async () => {
    const id = await app.enqueue('fails', { poison: true });
    const token = await app.token('fails');
    const writes: string[] = [];
    // A page whose handler throws on this message: the client library reports each failure.
    await page(
      app,
      'fails',
      async (got) => {
        writes.push(got);
        const res = await fetch(`${app.url}/v1/nacks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ids: [got] }),
        });
        expect(res.status).toBe(200);
      },
      async () => (await view(app, 'fails')).dead === 1,
    );
    expect(new Set(writes)).toEqual(new Set([id]));
    expect(writes.length).toBeGreaterThanOrEqual(3);
    const dead = await view(app, 'fails');
    expect(dead.inflight).toBe(0);
    expect(dead.deadLetters[0]).toMatchObject({ id, deliveries: 3, reason: 'max-deliveries' });
  });

  it('counts a missed ack when the page acked other messages meanwhile', async () => {
    const token = await app.token('skips');
    const skipped = await app.enqueue('skips', 'never handled');
    let skippedWrites = 0;
    // The page handles (acks) everything but one message: it is alive, so each timeout of that one counts.
    const feeder = setInterval(() => void app.enqueue('skips', 'handled').catch(() => undefined), 100);
    try {
      await page(
        app,
        'skips',
        async (got) => {
          if (got === skipped) skippedWrites += 1;
          else await app.ack(token, [got]);
        },
        async () => (await view(app, 'skips')).dead === 1,
      );
    } finally {
      clearInterval(feeder);
    }
    const dead = await view(app, 'skips');
    expect(dead.deadLetters[0]).toMatchObject({ id: skipped, deliveries: 3, reason: 'max-deliveries' });
    expect(skippedWrites).toBeGreaterThanOrEqual(3);
  });

  it('does not count a message the page has no handler for, and dead-letters it as unhandled after MAX_ATTEMPTS', async () => {
    const node = strict;
    const id = await node.enqueue('no-handler', 'an event nobody listens for', { event: 'report.ready' });
    const token = await node.token('no-handler');
    const reasons: string[] = [];
    await page(
      node,
      'no-handler',
      async (got) => {
        // What the client library does for a message no handler takes.
        const res = await fetch(`${node.url}/v1/nacks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ids: [got], reason: 'unhandled' }),
        });
        reasons.push(String(res.status));
      },
      async () => (await view(node, 'no-handler')).dead === 1,
    );
    expect(new Set(reasons)).toEqual(new Set(['200']));
    expect((await view(node, 'no-handler')).deadLetters[0]).toMatchObject({ id, deliveries: 0, attempts: 4, reason: 'unhandled' });
  });

  it('does not count writes to a stream that acks nothing: it closes the stream, and the next one gets the message', async () => {
    const reader = await open(app, 'unread');
    const id = await app.enqueue('unread', 'nobody reads this');
    await reader.waitFor(1);
    // Past the ack timeout with no ack at all: the stream is closed, not written to again.
    await reader.ended;
    expect(messages(reader).map((e) => e.id)).toEqual([id]);
    const before = await view(app, 'unread');
    expect(before).toMatchObject({ dead: 0, inflight: 1 });
    expect(before.inflightMessages[0]).toMatchObject({ id, deliveries: 0, attempts: 1 });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/postbox_streams_closed_total\{reason="unresponsive"\} [1-9]/);

    const next = await open(app, 'unread');
    const [again] = await next.waitFor(1);
    expect(again!.id).toBe(id);
    expect((await view(app, 'unread')).inflightMessages[0]).toMatchObject({ id, deliveries: 0, attempts: 2 });
    expect((await app.ack(await app.token('unread'), [id])).status).toBe(200);
  });

  it('does not use up deliveries on quick reconnects, and dead-letters after MAX_ATTEMPTS writes', async () => {
    const app = strict;
    const id = await app.enqueue('flaky', 'on a flaky network');
    // Three quick reconnects, as a flaky mobile network or a reload loop makes them.
    for (let i = 1; i <= 3; i += 1) {
      const reader = await open(app, 'flaky');
      const [event] = await reader.waitFor(1);
      expect(event!.id).toBe(id);
      reader.close();
      await waitUntil(async () => app.postbox.hub.count('flaky'), (n) => n === 0, 'the stream closed on the server');
      const v = await view(app, 'flaky');
      expect(v).toMatchObject({ dead: 0, inflight: 1 });
      expect(v.inflightMessages[0]).toMatchObject({ deliveries: 0, attempts: i });
    }
    // The fourth write is the last attempt (MAX_ATTEMPTS 4): past its ack timeout it is a dead letter.
    const last = await open(app, 'flaky');
    await last.waitFor(1);
    const dead = await waitUntil(() => view(app, 'flaky'), (v) => v.dead === 1, 'the message is a dead letter');
    expect(dead.deadLetters[0]).toMatchObject({ id, deliveries: 0, attempts: 4, reason: 'max-attempts' });
    expect(messages(last).map((e) => e.id)).toEqual([id]);
  });
});

describe('Last-Event-ID', () => {
  it('acks nothing by default: what is still in flight is written again first, in order', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) ids.push(await app.enqueue('resumer', i));
    const first = await open(app, 'resumer');
    await first.waitFor(4);
    first.close();
    await waitUntil(async () => app.postbox.hub.count('resumer'), (n) => n === 0, 'the first stream closed');
    // The browser saw up to the third; it reconnects with that id, its handlers possibly unfinished.
    const second = await open(app, 'resumer', ids[2]);
    await second.waitFor(4);
    expect(messages(second).map((e) => e.id)).toEqual(ids);
    expect((await view(app, 'resumer')).inflight).toBe(4);
  });

  it('with LAST_EVENT_ID_ACKS=1, acks everything up to it and resumes after it', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) ids.push(await optIn.enqueue('resumer', i));
    const first = await open(optIn, 'resumer');
    await first.waitFor(4);
    first.close();
    await waitUntil(async () => optIn.postbox.hub.count('resumer'), (n) => n === 0, 'the first stream closed');
    const second = await open(optIn, 'resumer', ids[2]);
    const [event] = await second.waitFor(1);
    expect(event).toMatchObject({ id: ids[3], data: '3' });
    expect((await view(optIn, 'resumer')).inflight).toBe(1);
    second.close();
    // The query form works too (EventSource cannot set headers on a new connection).
    await waitUntil(async () => optIn.postbox.hub.count('resumer'), (n) => n === 0, 'the second stream closed');
    const token = await optIn.token('resumer');
    const third = await openSse(optIn.streamUrl(token) + `&lastEventId=${ids[3]}`);
    readers.push(third);
    await waitUntil(() => view(optIn, 'resumer'), (v) => v.inflight === 0 && v.waiting === 0, 'everything is acked');
    expect(messages(third)).toHaveLength(0);
  });

  it('refuses a malformed Last-Event-ID with 400 and opens no stream', async () => {
    const token = await app.token('malformed');
    const res = await fetch(app.streamUrl(token), { headers: { 'last-event-id': 'nope\r\nevent: x' } }).catch(() => undefined);
    // fetch refuses a header with CR/LF itself; the query form reaches the server.
    if (res !== undefined) expect(res.status).toBe(400);
    const query = await fetch(app.streamUrl(token) + '&lastEventId=12-x');
    expect(query.status).toBe(400);
    expect(app.postbox.hub.count('malformed')).toBe(0);
  });
});

describe('HEAD /v1/stream', () => {
  it('answers the stream headers with no body, opens no stream and delivers nothing', async () => {
    await app.enqueue('monitored', 'for the browser, not the monitor');
    const token = await app.token('monitored');
    const res = await fetch(app.streamUrl(token), { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await res.text()).toBe('');
    expect(app.postbox.hub.count('monitored')).toBe(0);
    expect(await view(app, 'monitored')).toMatchObject({ waiting: 1, inflight: 0 });
    expect((await fetch(app.streamUrl('forged'), { method: 'HEAD' })).status).toBe(401);
    // The browser then gets it, once, as a first delivery.
    const reader = await open(app, 'monitored');
    await reader.waitFor(1);
    expect((await view(app, 'monitored')).inflightMessages[0]).toMatchObject({ attempts: 1 });
  });
});
