import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  connect,
  type EventSourceConstructorLike,
  type EventSourceEventLike,
  type FetchLike,
  type PostboxClient,
  type PostboxCounts,
  type PostboxExpired,
  type PostboxLifecycleEvent,
  type PostboxMessage,
  type ServiceWorkerContainerLike,
  type ServiceWorkerRegistrationLike,
} from '../../src/client/postbox.js';

// The client's handling of the server's control events (postbox.acked, .expired, .counts) and
// of the service worker's messages, with a fake EventSource driven by the test, a fake
// service-worker container, and a fetch that records the acks (and nacks).

class FakeEventSource {
  static instances: FakeEventSource[] = [];
  readonly listeners = new Map<string, Array<(event: EventSourceEventLike) => void>>();
  closed = false;
  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }
  addEventListener(type: string, listener: (event: EventSourceEventLike) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  close(): void {
    this.closed = true;
  }
  /** What the browser does with one SSE event: only the listeners of its name hear it. */
  emit(type: string, data?: string, lastEventId = ''): void {
    const event: EventSourceEventLike = data === undefined ? { type } : { type, data, lastEventId };
    for (const l of this.listeners.get(type) ?? []) l(event);
  }
  message(id: string, data: unknown, event = 'message'): void {
    this.emit(event, JSON.stringify(data), id);
  }
  control(name: string, data: unknown): void {
    this.emit(`postbox.${name}`, typeof data === 'string' ? data : JSON.stringify(data));
  }
}

const acks: string[][] = [];
const fetchAcks: FetchLike = async (_url, init) => {
  acks.push((JSON.parse(init.body) as { ids: string[] }).ids);
  return { ok: true, status: 200 };
};
const clients: PostboxClient[] = [];

function start(
  options: { autoAck?: boolean; notices?: boolean; serviceWorker?: ServiceWorkerContainerLike } = {},
): { client: PostboxClient; source: () => FakeEventSource } {
  const client = connect({
    url: 'https://push.example',
    token: 'not-a-jwt',
    EventSource: FakeEventSource as unknown as EventSourceConstructorLike,
    fetch: fetchAcks,
    backoff: { minMs: 1, maxMs: 1 },
    ...options,
  });
  clients.push(client);
  return { client, source: () => FakeEventSource.instances.at(-1) as FakeEventSource };
}

/** Lets the client's deferred steps (its first connection, its ack timer) run. */
const settle = () => vi.advanceTimersByTimeAsync(200);

beforeEach(() => {
  vi.useFakeTimers();
  FakeEventSource.instances = [];
  acks.length = 0;
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  vi.useRealTimers();
});

describe('the client and the control events', () => {
  it('asks for the notices of stream open unless told not to', async () => {
    start();
    await settle();
    expect(new URL(FakeEventSource.instances[0]?.url ?? '').searchParams.get('notices')).toBe('1');
    start({ notices: false });
    await settle();
    expect(new URL(FakeEventSource.instances[1]?.url ?? '').searchParams.has('notices')).toBe(false);
  });

  it('postbox.acked: calls onAcked, drops the ids from the unacked set and never hands them to a handler', async () => {
    const { client, source } = start({ autoAck: false });
    const handled: string[] = [];
    const dismissed: string[][] = [];
    client.on('message', (msg) => void handled.push(msg.id));
    client.onAcked((ids) => dismissed.push(ids));
    await settle();
    source().message('1-0', 'seen here first');
    expect(handled).toEqual(['1-0']);

    source().control('acked', { ids: ['1-0', '2-0'] });
    expect(dismissed).toEqual([['1-0', '2-0']]);
    // 2-0 reaches this tab after another tab acked it, and 1-0 comes again: neither is handled or acked.
    source().message('2-0', 'late frame');
    source().message('1-0', 'redelivered');
    await settle();
    expect(handled).toEqual(['1-0']);
    expect(acks).toEqual([]);

    // Nothing received is unacked any more: a reconnect resumes after the last id.
    source().emit('error');
    await settle();
    const url = new URL(FakeEventSource.instances.at(-1)?.url ?? '');
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(url.searchParams.get('lastEventId')).toBe('1-0');
  });

  it('keeps a message acked elsewhere out of a handler even when the control event comes first', async () => {
    const { client, source } = start();
    const handled: string[] = [];
    client.on('chat', (msg) => void handled.push(msg.id));
    await settle();
    source().control('acked', { ids: ['5-0'] });
    source().message('5-0', 'hi', 'chat');
    source().message('6-0', 'hello', 'chat');
    await settle();
    expect(handled).toEqual(['6-0']);
    expect(acks.flat()).toEqual(['6-0']);
  });

  it('postbox.expired and postbox.counts reach onExpired and onCounts', async () => {
    const { client, source } = start();
    const expired: PostboxExpired[] = [];
    const counts: PostboxCounts[] = [];
    client.onExpired((e) => expired.push(e));
    const stop = client.onCounts((c) => counts.push(c));
    await settle();
    source().control('counts', { waiting: 3, inflight: 1 });
    source().control('expired', { count: 120, ids: ['7-0', '8-0'] });
    expect(counts).toEqual([{ waiting: 3, inflight: 1 }]);
    expect(expired).toEqual([{ count: 120, ids: ['7-0', '8-0'] }]);
    stop();
    source().control('counts', { waiting: 0, inflight: 0 });
    expect(counts).toHaveLength(1);
  });

  it('ignores malformed control events and hands none of them to message handlers', async () => {
    const { client, source } = start();
    const seen: unknown[] = [];
    const calls: unknown[] = [];
    client.on('message', (msg) => void seen.push(msg));
    client.onAcked((ids) => calls.push(ids));
    client.onExpired((e) => calls.push(e));
    client.onCounts((c) => calls.push(c));
    await settle();
    source().control('acked', 'not json');
    source().control('acked', { ids: 'nope' });
    source().control('acked', { ids: [] });
    source().control('expired', { count: '3', ids: [] });
    source().control('counts', { waiting: 1 });
    await settle();
    expect(calls).toEqual([]);
    expect(seen).toEqual([]);
    expect(acks).toEqual([]);
  });

  it('goes on calling the other onAcked handlers when one throws', async () => {
    const { client, source } = start();
    const calls: string[][] = [];
    client.onAcked(() => {
      throw new Error('page bug');
    });
    client.onAcked((ids) => calls.push(ids));
    await settle();
    source().control('acked', { ids: ['9-0'] });
    expect(calls).toEqual([['9-0']]);
    // The thrower's error is rethrown on a timer, as EventTarget reports a listener's exception.
    await expect(vi.runOnlyPendingTimersAsync()).rejects.toThrow('page bug');
  });
});

/** `navigator.serviceWorker` of a page whose worker runs the postbox helper: the test speaks for the worker. */
function fakeServiceWorker(): { container: ServiceWorkerContainerLike; handOver(id: string, event: string, data: unknown): void } {
  let listener: ((event: { data: unknown; ports: [] }) => void) | undefined;
  const registration = { active: { postMessage: () => undefined }, pushManager: {} } as unknown as ServiceWorkerRegistrationLike;
  return {
    container: {
      ready: Promise.resolve(registration),
      addEventListener: (_type, l) => void (listener = l),
      startMessages: () => undefined,
    },
    // What the helper posts after a click on the notification, once it acked the message.
    handOver: (id, event, data) => listener?.({ data: { type: 'postbox.message', id, event, data }, ports: [] }),
  };
}

describe('a message the service worker hands over after a notification click', () => {
  it("reaches a page whose only handler is '*', as a stream's message would, and is not acked again", async () => {
    const worker = fakeServiceWorker();
    const { client } = start({ serviceWorker: worker.container });
    const got: PostboxMessage[] = [];
    client.on('*', (msg) => void got.push(msg));
    await settle();
    worker.handOver('11-0', 'chat', { text: 'see you at 8' });
    await settle();
    expect(got).toEqual([{ id: '11-0', event: 'chat', data: { text: 'see you at 8' }, notified: true, via: 'push' }]);
    expect(acks).toEqual([]);
  });

  it('is held for a handler to come when the page has none, and reported, with nothing sent to the server', async () => {
    const worker = fakeServiceWorker();
    const { client } = start({ serviceWorker: worker.container });
    const lifecycle: PostboxLifecycleEvent[] = [];
    client.onLifecycle((e) => void lifecycle.push(e));
    await settle();
    worker.handOver('12-0', 'chat', 'hi');
    await settle();
    expect(lifecycle.filter((e) => e.type === 'unhandled')).toEqual([
      { type: 'unhandled', message: { id: '12-0', event: 'chat', data: 'hi', notified: true, via: 'push' } },
    ]);
    const got: string[] = [];
    client.on('chat', (msg) => void got.push(msg.id));
    await settle();
    expect(got).toEqual(['12-0']);
    // The worker acked it with the push's credential: neither an ack nor an `unhandled` nack.
    expect(acks).toEqual([]);
  });
});
