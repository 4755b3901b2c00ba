import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { createDrainWorker, type DrainMailbox, type DrainSession } from '../../src/delivery/drain-worker.js';
import type { SseFrame } from '../../src/delivery/sse-session.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { Joined, PopResult } from '../../src/queue/mailbox.js';

/** A clock whose time moves only when the test says so; timers fire in due order. */
function fakeClock(start = 1_000_000): Clock & { advance(ms: number): void } {
  let now = start;
  let next = 1;
  const timers = new Map<number, { at: number; fn: () => void; every?: number }>();
  const handle = (id: number) => id as unknown as NodeJS.Timeout;
  return {
    now: () => now,
    setTimeout: (fn, ms) => (timers.set(next, { at: now + ms, fn }), handle(next++)),
    setInterval: (fn, ms) => (timers.set(next, { at: now + ms, fn, every: ms }), handle(next++)),
    clearTimeout: (h) => void timers.delete(h as unknown as number),
    clearInterval: (h) => void timers.delete(h as unknown as number),
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (due === undefined) break;
        const [id, t] = due;
        now = t.at;
        if (t.every === undefined) timers.delete(id);
        else t.at += t.every;
        t.fn();
      }
      now = until;
    },
  };
}

/** The Redis side as the drain sees it: scripted answers, and a record of every call in order. */
function fakeMailbox() {
  const calls: string[] = [];
  const pops = new Map<string, Array<PopResult | Error>>();
  const joins = new Map<string, Joined>();
  const mailbox: DrainMailbox = {
    async pop(userIds) {
      calls.push(`pop ${userIds.join(',')}`);
      return new Map(userIds.map((u) => [u, pops.get(u)?.shift() ?? popped([])]));
    },
    async join(userId, { first }) {
      calls.push(`join ${userId}${first ? ' first' : ''}`);
      return joins.get(userId) ?? { others: 0, inflight: [] };
    },
    async release(userId) {
      calls.push(`release ${userId}`);
      return 0;
    },
  };
  return { mailbox, calls, pops, joins };
}

function popped(ids: string[], extra: Partial<Extract<PopResult, { status: 'popped' }>> = {}): PopResult {
  return {
    status: 'popped',
    inflight: ids.length,
    more: false,
    expired: 0,
    dead: 0,
    nextDueMs: ids.length > 0 ? 30_000 : undefined,
    shared: false,
    unresponsive: 0,
    deliveries: ids.map((id) => ({ id, event: 'message', data: JSON.stringify(id), attempts: 1 })),
    ...extra,
  };
}

/** A stream as the drain drives it: what it was written, held frames included, in order. */
function session(userId: string) {
  const written: string[] = [];
  let held: SseFrame[] | undefined;
  const s: DrainSession & { written: string[] } = {
    userId,
    written,
    notices: false,
    control: () => true,
    hold: () => void (held ??= []),
    release: (first) => {
      const queued = held ?? [];
      held = undefined;
      for (const f of [...first, ...queued]) if (!written.includes(f.id)) written.push(f.id);
    },
  };
  return { s, send: (f: SseFrame) => (held !== undefined ? held.push(f) : written.push(f.id)) };
}

function setup(options: { ackTimeoutMs?: number; sweepPeriodMs?: number } = {}) {
  const clock = fakeClock();
  const fake = fakeMailbox();
  const streams = new Map<string, ReturnType<typeof session>[]>();
  const closed: string[] = [];
  const channel: string[] = [];
  const drain = createDrainWorker({
    mailbox: fake.mailbox,
    hub: {
      send: (userId, frame) => {
        for (const st of streams.get(userId) ?? []) st.send(frame);
        return streams.get(userId)?.length ?? 0;
      },
      closeUser: (userId) => void closed.push(userId),
    },
    channels: {
      subscribe: async (userId) => void channel.push(`subscribe ${userId}`),
      unsubscribe: async (userId) => void channel.push(`unsubscribe ${userId}`),
      wake: async (userId) => void channel.push(`wake ${userId}`),
    },
    clock,
    logger: pino({ level: 'silent' }),
    metrics: createMetrics(),
    options: {
      drainIntervalMs: 100,
      ackTimeoutMs: options.ackTimeoutMs ?? 30_000,
      maxInflight: 10,
      sweepPeriodMs: options.sweepPeriodMs ?? 600_000,
    },
    random: () => 0.5,
  });
  const open = async (userId: string) => {
    const st = session(userId);
    streams.set(userId, [...(streams.get(userId) ?? []), st]);
    drain.streamOpened(st.s);
    await drain.idle();
    return st.s;
  };
  /** Moves time on one drain interval at a time, letting the passes each tick starts finish. */
  const tick = async (ms: number) => {
    for (let left = ms; left > 0; left -= 100) {
      clock.advance(Math.min(100, left));
      await drain.idle();
    }
  };
  return { drain, clock, ...fake, open, tick, closed, channel, streams };
}

describe('drain worker (fake clock, fake mailbox, no sockets)', () => {
  it('subscribes, then joins, writes the catch-up first, then pops', async () => {
    const t = setup();
    t.joins.set('u', { others: 0, inflight: [{ id: '5-0', event: 'm', data: '1', attempts: 2, idleMs: 10 }] });
    t.pops.set('u', [popped(['6-0'])]);
    const s = await t.open('u');
    expect(t.channel).toEqual(['subscribe u']);
    expect(t.calls).toEqual(['join u first', 'pop u']);
    expect((s as unknown as { written: string[] }).written).toEqual(['5-0', '6-0']);
  });

  it('costs nothing for idle connected users: no pop on ticks until a wake or a deadline', async () => {
    const t = setup({ ackTimeoutMs: 1000 });
    t.pops.set('u', [popped(['1-0'], { nextDueMs: 1000 })]);
    await t.open('u');
    t.calls.length = 0;
    await t.tick(900);
    expect(t.calls).toEqual([]); // 9 ticks, nothing due
    await t.tick(200);
    expect(t.calls).toEqual(['pop u']); // the in-flight message reached its ack timeout
  });

  it('skips a wake for an id it has already read, and pops for a newer one', async () => {
    const t = setup();
    t.pops.set('u', [popped(['10-0', '11-0'])]);
    await t.open('u');
    t.calls.length = 0;
    t.drain.wake('u', '11-0');
    t.drain.wake('u', '9-5');
    await t.drain.idle();
    expect(t.calls).toEqual([]);
    t.drain.wake('u', '12-0');
    await t.drain.idle();
    expect(t.calls).toEqual(['pop u']);
  });

  it("keeps one user's failed pop to that user: the others are written, it is tried again on the next tick", async () => {
    const t = setup();
    await t.open('a');
    await t.open('b');
    t.calls.length = 0;
    t.pops.set('a', [new Error('MOVED 1234 127.0.0.1:7001'), popped(['2-0'])]);
    t.pops.set('b', [popped(['3-0'])]);
    t.drain.wake('a');
    t.drain.wake('b');
    await t.drain.idle();
    expect(t.streams.get('b')![0]!.s.written).toEqual(['3-0']);
    expect(t.streams.get('a')![0]!.s.written).toEqual([]);
    await t.tick(100);
    expect(t.streams.get('a')![0]!.s.written).toEqual(['2-0']);
  });

  it('after a failed pop, reads what is in flight and writes it before it pops the user again', async () => {
    const t = setup();
    const s = await t.open('u');
    t.calls.length = 0;
    // The pop ran in Redis and took 4-0 into flight, but its reply was lost.
    t.pops.set('u', [new Error('Command timed out'), popped(['5-0'])]);
    t.joins.set('u', { others: 0, inflight: [{ id: '4-0', event: 'm', data: '4', attempts: 1, idleMs: 50 }] });
    t.drain.wake('u');
    await t.drain.idle();
    expect((s as unknown as { written: string[] }).written).toEqual([]);
    await t.tick(100);
    expect(t.calls).toEqual(['pop u', 'join u', 'pop u']);
    expect((s as unknown as { written: string[] }).written).toEqual(['4-0', '5-0']);
  });

  it('leaves the popping to the lease holder until its lease could have run out', async () => {
    const t = setup();
    await t.open('u');
    t.calls.length = 0;
    t.pops.set('u', [{ status: 'not-mine', waitMs: 3000 }, popped([])]);
    t.drain.wake('u', '100-0');
    await t.drain.idle();
    expect(t.calls).toEqual(['pop u']);
    t.drain.wake('u', '101-0'); // the holder pops on this wake too
    await t.tick(2900);
    expect(t.calls).toEqual(['pop u']);
    await t.tick(200);
    expect(t.calls).toEqual(['pop u', 'pop u']);
  });

  it('writes the frames another node popped, and closes streams that acked nothing past the ack timeout', async () => {
    const t = setup();
    const s = await t.open('u');
    t.drain.frames('u', [{ id: '7-0', event: 'm', data: '7' }]);
    expect((s as unknown as { written: string[] }).written).toEqual(['7-0']);
    t.pops.set('u', [popped([], { unresponsive: 1 })]);
    t.drain.wake('u');
    await t.drain.idle();
    expect(t.closed).toEqual(['u']);
  });

  it('keeps the registration of a user who comes straight back, and releases before joining again otherwise', async () => {
    const t = setup();
    await t.open('u');
    // Back before the release could run: nothing is released, the new stream joins again.
    t.drain.userLeft('u');
    t.streams.delete('u');
    await t.open('u');
    expect(t.calls.filter((c) => !c.startsWith('pop'))).toEqual(['join u first', 'join u first']);
    // Gone for longer: released and unsubscribed, then subscribed and joined again, in that order.
    t.drain.userLeft('u');
    t.streams.delete('u');
    await t.drain.idle();
    await t.open('u');
    expect(t.calls.filter((c) => !c.startsWith('pop'))).toEqual(['join u first', 'join u first', 'release u', 'join u first']);
    expect(t.channel).toEqual(['subscribe u', 'subscribe u', 'unsubscribe u', 'subscribe u']);
  });

  it('pops every connected user once per sweep period even with no wake (lost wakes)', async () => {
    const t = setup({ sweepPeriodMs: 10_000 });
    for (const u of ['a', 'b', 'c']) await t.open(u);
    t.calls.length = 0;
    const popped = () => t.calls.flatMap((c) => (c.startsWith('pop ') ? c.slice(4).split(',') : [])).sort();
    for (let period = 0; period < 3; period += 1) {
      await t.tick(10_000);
      expect(popped()).toEqual(['a', 'b', 'c']);
      t.calls.length = 0;
    }
  });
});
