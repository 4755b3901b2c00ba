import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { SseSession } from '../../src/delivery/sse-session.js';

/*
 * The stall watchdog of one stream, with no socket: the response is a Writable
 * whose reader the test drives, and time is a clock the test advances.
 */

/**
 * A clock that moves only when told to: timers fire in `advance`, in time order, each in a turn
 * of its own as Node's event loop runs them: the timer, then that turn's I/O (`duringNextPoll`),
 * then its setImmediate callbacks.
 */
class ManualClock implements Clock {
  private at = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void; every?: number }>();
  private readonly immediates = new Map<number, () => void>();
  private poll: (() => void) | undefined;

  now(): number {
    return this.at;
  }
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout {
    return this.add(fn, ms);
  }
  setInterval(fn: () => void, ms: number): NodeJS.Timeout {
    return this.add(fn, ms, ms);
  }
  clearTimeout(handle: NodeJS.Timeout | undefined): void {
    if (handle !== undefined) this.timers.delete(handle as unknown as number);
  }
  clearInterval(handle: NodeJS.Timeout | undefined): void {
    this.clearTimeout(handle);
  }
  setImmediate(fn: () => void): NodeJS.Immediate {
    const id = this.nextId++;
    this.immediates.set(id, fn);
    return id as unknown as NodeJS.Immediate;
  }
  clearImmediate(handle: NodeJS.Immediate | undefined): void {
    if (handle !== undefined) this.immediates.delete(handle as unknown as number);
  }
  /** Timers and immediates set and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size + this.immediates.size;
  }
  /** `io` runs in the turn of the next timer to fire, after it and before the turn's immediates. */
  duringNextPoll(io: () => void): void {
    this.poll = io;
  }
  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.at + ms;
    // Bounded: each pass fires one timer due by `end`; an interval re-arms strictly later.
    for (let fired = 0; fired < 10_000; fired += 1) {
      const next = [...this.timers.entries()].filter(([, t]) => t.due <= end).sort((a, b) => a[1].due - b[1].due)[0];
      if (next === undefined) break;
      const [id, timer] = next;
      this.at = timer.due;
      if (timer.every === undefined) this.timers.delete(id);
      else timer.due += timer.every;
      timer.fn();
      const io = this.poll;
      this.poll = undefined;
      io?.();
      // Bounded: what the immediates run now set waits for the next turn.
      const immediates = [...this.immediates.values()];
      this.immediates.clear();
      for (const fn of immediates) fn();
    }
    this.at = end;
  }
  private add(fn: () => void, ms: number, every?: number): NodeJS.Timeout {
    const id = this.nextId++;
    this.timers.set(id, { due: this.at + ms, fn, ...(every === undefined ? {} : { every }) });
    return id as unknown as NodeJS.Timeout;
  }
}

/**
 * What the session needs of an HTTP/1.1 response, over a Writable whose reader
 * only takes a chunk when `read()` is called: a small high-water mark stands for a
 * full socket buffer. `socket` is absent, so the session's socket settings are skipped.
 */
class FakeResponse extends Writable {
  /** Every text the session passed to write(), in order. */
  readonly written: string[] = [];
  status: number | undefined;
  headers: Record<string, string> = {};
  readonly socket = undefined;
  private readonly held: Array<() => void> = [];

  constructor() {
    super({ highWaterMark: 64, decodeStrings: false });
    const write = this.write.bind(this);
    this.write = ((chunk: string, ...rest: never[]) => {
      this.written.push(chunk);
      return write(chunk, ...rest);
    }) as typeof this.write;
  }

  writeHead(status: number, headers: Record<string, string>): this {
    this.status = status;
    this.headers = headers;
    return this;
  }

  /** The reader takes the oldest `chunks` writes off the buffer. */
  read(chunks = 1): void {
    for (let i = 0; i < chunks; i += 1) this.held.shift()?.();
  }

  /** The reader takes everything buffered. */
  readAll(): void {
    // Bounded by what is buffered; each completed write may start the next one.
    for (let i = 0; i < 10_000 && this.held.length > 0; i += 1) this.read();
  }

  override _write(_chunk: unknown, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.held.push(() => done());
  }
}

const WRITE_STALL_MS = 1000;
/** A frame bigger than the high-water mark on its own: the first one fills the buffer. */
const frame = (n: number) => ({ id: `${n}-0`, event: 'message', data: JSON.stringify({ n, pad: 'x'.repeat(60) }) });

function open() {
  const clock = new ManualClock();
  const res = new FakeResponse();
  const session = new SseSession('user-1', res as unknown as ServerResponse, clock, { retryMs: 2000, writeStallMs: WRITE_STALL_MS });
  const reasons: string[] = [];
  session.onClose((reason) => reasons.push(reason));
  return { clock, res, session, reasons };
}

describe('SseSession stall watchdog', () => {
  it('starts an event stream with the retry field', () => {
    const { res, session } = open();
    expect(res.status).toBe(200);
    expect(res.headers['Content-Type']).toMatch(/^text\/event-stream/);
    expect(res.written).toEqual(['retry: 2000\n\n']);
    expect(session.isOpen).toBe(true);
  });

  it('closes the stream of a reader that stops reading after WRITE_STALL_MS, reason "write stalled"', () => {
    const { clock, res, session, reasons } = open();
    expect(session.send(frame(1))).toBe(false); // the buffer is full: the watchdog is armed
    expect(clock.pending).toBe(1);
    clock.advance(WRITE_STALL_MS - 1);
    expect(session.isOpen).toBe(true);
    clock.advance(1);
    expect(session.isOpen).toBe(false);
    expect(reasons).toEqual(['write stalled']);
    expect(res.destroyed).toBe(true);
  });

  it('does not count frames written to a stopped reader as progress', () => {
    const { clock, session, reasons } = open();
    session.send(frame(1));
    clock.advance(WRITE_STALL_MS / 2);
    session.send(frame(2));
    session.ping();
    clock.advance(WRITE_STALL_MS / 2);
    expect(reasons).toEqual(['write stalled']);
  });

  it('keeps the stream of a reader that is slow but moving: the watchdog re-arms while bytes flush', () => {
    const { clock, res, session, reasons } = open();
    for (let n = 1; n <= 5; n += 1) session.send(frame(n));
    // Four windows in a row, one chunk read in each: never drained, never stalled.
    for (let window = 0; window < 4; window += 1) {
      clock.advance(WRITE_STALL_MS / 2);
      res.read();
      clock.advance(WRITE_STALL_MS / 2);
      expect(session.isOpen, `window ${window}`).toBe(true);
      expect(clock.pending).toBe(1); // re-armed for the next window
    }
    expect(res.writableLength).toBeGreaterThan(0);
    // Then the reader stops: one window later the stream is closed.
    clock.advance(WRITE_STALL_MS);
    expect(reasons).toEqual(['write stalled']);
  });

  it('disarms the watchdog when the buffer drains before the deadline', () => {
    const { clock, res, session, reasons } = open();
    session.send(frame(1));
    session.send(frame(2));
    clock.advance(WRITE_STALL_MS - 1);
    res.readAll(); // 'drain'
    expect(res.writableLength).toBe(0);
    expect(clock.pending).toBe(0);
    clock.advance(10 * WRITE_STALL_MS);
    expect(session.isOpen).toBe(true);
    expect(reasons).toEqual([]);
    // A later stall arms it afresh, with a full window.
    session.send(frame(3));
    clock.advance(WRITE_STALL_MS - 1);
    expect(session.isOpen).toBe(true);
    clock.advance(1);
    expect(reasons).toEqual(['write stalled']);
  });

  it('looks again after the I/O of the turn its timer fired in: a socket that flushed then keeps its stream', () => {
    const drained = open();
    drained.session.send(frame(1));
    // The timer fires with the buffer still full; the socket's write completes in the same turn.
    drained.clock.duringNextPoll(() => drained.res.readAll());
    drained.clock.advance(WRITE_STALL_MS);
    expect(drained.session.isOpen).toBe(true);
    expect(drained.reasons).toEqual([]);
    expect(drained.clock.pending).toBe(0); // drained: disarmed

    const moving = open();
    moving.session.send(frame(1));
    moving.session.send(frame(2));
    moving.clock.duringNextPoll(() => moving.res.read());
    moving.clock.advance(WRITE_STALL_MS);
    expect(moving.session.isOpen).toBe(true);
    expect(moving.clock.pending).toBe(1); // moving: armed for the next window
    moving.clock.advance(WRITE_STALL_MS);
    expect(moving.reasons).toEqual(['write stalled']);
  });

  it('writes nothing after it closed, by its own close or by the watchdog', () => {
    const closedByCall = open();
    closedByCall.session.close('shutdown');
    const afterClose = closedByCall.res.written.length;
    expect(closedByCall.session.send(frame(1))).toBe(false);
    closedByCall.session.ping();
    expect(closedByCall.res.written).toHaveLength(afterClose);
    expect(closedByCall.reasons).toEqual(['shutdown']);
    expect(closedByCall.res.writableEnded).toBe(true);

    const stalled = open();
    stalled.session.send(frame(1));
    stalled.clock.advance(WRITE_STALL_MS);
    const afterStall = stalled.res.written.length;
    expect(stalled.session.send(frame(2))).toBe(false);
    stalled.session.ping();
    expect(stalled.res.written).toHaveLength(afterStall);
    expect(stalled.reasons).toEqual(['write stalled']);
    expect(stalled.clock.pending).toBe(0);
  });

  it('reports the reader closing the stream once', () => {
    const { res, session, reasons } = open();
    res.emit('close');
    res.emit('close');
    expect(session.isOpen).toBe(false);
    expect(reasons).toEqual(['client closed']);
  });
});
