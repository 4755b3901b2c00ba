import type { ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Writable } from 'node:stream';
import type { Clock } from '../clock.js';
import { EVENT_ID_PATTERN, EVENT_NAME_PATTERN } from '../queue/keys.js';

export interface SseSessionOptions {
  /** Sent first as `retry:`; browsers wait this long before reconnecting, ms. */
  retryMs: number;
  /** A socket whose buffer stays full this long is closed, ms. */
  writeStallMs: number;
  /**
   * An id written to this stream is not written again within this long, ms: a message can reach
   * a new stream both in its catch-up and from a pass or another node in the same instant. A real
   * redelivery comes an ack timeout later, so half of it is safe. @defaultValue 0 (no check)
   */
  repeatWindowMs?: number;
  /**
   * Before the first message of each event name (but `message`), write `event: postbox.event`
   * with the name as data, so a client can start listening for it: EventSource drops named
   * events nobody listens for before any script sees them. The client library asks for it
   * (`?announce=1`). @defaultValue false
   */
  announceEvents?: boolean;
  /** The stream asked (`?notices=1`) for `postbox.counts` and `postbox.expired` when it opens. @defaultValue false */
  notices?: boolean;
}

/** Ids remembered per stream for the repeat check; the oldest go first. */
const RECENT_MAX = 32;

export interface SseFrame {
  id: string;
  event: string;
  /** One line of JSON: JSON.stringify never emits a raw CR or LF. */
  data: string;
}

/** Frames a catching-up session holds at most; beyond it the oldest go (redelivery brings them back). */
const HELD_MAX = 1000;

/** Names of the server's own events (`postbox.acked`, …): they carry no `id:` line, so they never move a browser's Last-Event-ID. */
export const CONTROL_PREFIX = 'postbox.';

/**
 * True for a frame that cannot break SSE framing: an event id and an event
 * name of the patterns enqueue enforces, and data on one line (WHATWG HTML
 * §9.2.6: CR, LF and CRLF all end a line). Frames from other nodes pass this
 * before they are written.
 */
export function isSafeFrame(value: unknown): value is SseFrame {
  if (typeof value !== 'object' || value === null) return false;
  const { id, event, data } = value as Partial<Record<keyof SseFrame, unknown>>;
  return (
    typeof id === 'string' &&
    EVENT_ID_PATTERN.test(id) &&
    typeof event === 'string' &&
    EVENT_NAME_PATTERN.test(event) &&
    typeof data === 'string' &&
    !/[\r\n]/.test(data)
  );
}

/**
 * One open event stream. It writes frames straight to the socket and watches
 * backpressure: when the kernel buffer stays full for `writeStallMs`, the
 * session closes itself, so a slow browser cannot grow the server's memory;
 * what it did not ack is delivered again later.
 */
export class SseSession {
  readonly userId: string;
  readonly openedAt: number;
  /** Wants the notices of stream open (`postbox.counts`, `postbox.expired`). */
  readonly notices: boolean;
  private readonly res: ServerResponse | Http2ServerResponse;
  private readonly clock: Clock;
  private readonly writeStallMs: number;
  private stallTimer: NodeJS.Timeout | undefined;
  /** The stall timer fired on a stream that looked stalled: the verdict waits for this turn's I/O. */
  private stallCheck: NodeJS.Immediate | undefined;
  /** Bytes written since the stall timer was armed, to tell a slow reader from a stopped one. */
  private queuedSinceArm = 0;
  private closed = false;
  /** When anything was last written (epoch ms): a stream that just got a frame needs no ping. */
  lastWriteAt: number;
  /** While the session catches up (what is in flight is being read), frames wait here in order. */
  private held: SseFrame[] | undefined;
  private readonly repeatWindowMs: number;
  /** Ids written lately, with when (epoch ms); allocated on the first write. */
  private recent: Map<string, number> | undefined;
  /** Event names announced on this stream (with `announceEvents`); allocated on the first. */
  private announced: Set<string> | undefined;
  private readonly announceEvents: boolean;
  private readonly closeHandlers: Array<(reason: string) => void> = [];

  constructor(userId: string, res: ServerResponse | Http2ServerResponse, clock: Clock, options: SseSessionOptions) {
    this.userId = userId;
    this.res = res;
    this.clock = clock;
    this.openedAt = clock.now();
    this.lastWriteAt = this.openedAt;
    this.notices = options.notices ?? false;
    this.writeStallMs = options.writeStallMs;
    this.repeatWindowMs = options.repeatWindowMs ?? 0;
    this.announceEvents = options.announceEvents ?? false;
    const headers = {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      'X-Accel-Buffering': 'no',
    };
    if (res instanceof Http2ServerResponse) {
      // RFC 9113 §8.2.2: no connection-specific headers (Node throws on `Connection`). The
      // connection carries every stream of the session and Node owns it (its socket refuses
      // setNoDelay/setKeepAlive); the stream's own idle timeout is the one to lift.
      res.writeHead(200, headers);
      res.stream.setTimeout(0);
    } else {
      // The body is delimited by the connection's close (RFC 9112 §6.3), not chunked: an event
      // stream ends only with its connection anyway, and every frame is then one plain socket
      // write instead of a chunk header, the data and a CRLF (a third less CPU per write).
      res.useChunkedEncodingByDefault = false;
      res.writeHead(200, { ...headers, Connection: 'keep-alive' });
      res.socket?.setTimeout(0);
      res.socket?.setNoDelay(true);
      res.socket?.setKeepAlive(true);
    }
    res.on('close', () => this.finish('client closed'));
    res.on('drain', () => this.disarmStallTimer());
    this.write(`retry: ${options.retryMs}\n\n`);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Bytes waiting in this stream's socket buffer. */
  get buffered(): number {
    return this.res.writableLength;
  }

  onClose(handler: (reason: string) => void): void {
    this.closeHandlers.push(handler);
  }

  /** False between `hold` and `release`: the stream is catching up and frames are held. */
  get live(): boolean {
    return this.held === undefined;
  }

  /** Starts a catch-up: frames sent from now on wait until `release`. */
  hold(): void {
    this.held ??= [];
  }

  /** Writes a message frame, or holds it while the session catches up. */
  send(frame: SseFrame): boolean {
    if (this.held !== undefined) {
      this.held.push(frame);
      if (this.held.length > HELD_MAX) this.held.shift();
      return true;
    }
    if (this.repeatWindowMs > 0) {
      const now = this.clock.now();
      const at = this.recent?.get(frame.id);
      if (at !== undefined && now - at < this.repeatWindowMs) return true;
      this.recent ??= new Map();
      this.recent.delete(frame.id);
      this.recent.set(frame.id, now);
      if (this.recent.size > RECENT_MAX) this.recent.delete(this.recent.keys().next().value as string);
    }
    if (this.announceEvents && frame.event !== 'message' && !this.announced?.has(frame.event)) {
      (this.announced ??= new Set()).add(frame.event);
      this.control('event', frame.event);
    }
    return this.write(`id: ${frame.id}\nevent: ${frame.event}\ndata: ${frame.data}\n\n`);
  }

  /**
   * Ends the catch-up: writes `first` (what was in flight when the stream
   * opened, oldest first), then the frames held meanwhile that were not among
   * them, in the order they came.
   */
  release(first: SseFrame[]): void {
    const held = this.held ?? [];
    this.held = undefined;
    const written = new Set<string>();
    for (const frame of [...first, ...held]) {
      if (written.has(frame.id)) continue;
      written.add(frame.id);
      this.send(frame);
    }
  }

  /** A control event of the server: `event: postbox.<name>`, JSON data, no id. */
  control(name: string, data: unknown): boolean {
    return this.write(`event: ${CONTROL_PREFIX}${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  ping(): void {
    this.write(': ping\n\n');
  }

  /** Ends the stream cleanly (shutdown); the browser reconnects with Last-Event-ID. */
  close(reason: string): void {
    if (this.closed) return;
    this.res.end();
    this.finish(reason);
  }

  private write(text: string): boolean {
    if (this.closed) return false;
    this.lastWriteAt = this.clock.now();
    // Both responses are Writables; only their write overloads' callback types differ.
    const ok = (this.res as Writable).write(text);
    if (this.stallTimer !== undefined || this.stallCheck !== undefined) {
      this.queuedSinceArm += Buffer.byteLength(text);
    } else if (!ok) {
      this.armStallTimer();
    }
    return ok;
  }

  /**
   * Closes the stream if nothing at all is flushed for `writeStallMs`. A reader
   * that is slow but moving (a big burst on a busy machine) keeps its stream.
   */
  private armStallTimer(): void {
    const bufferedAtArm = this.res.writableLength;
    this.queuedSinceArm = 0;
    this.stallTimer = this.clock.setTimeout(() => {
      this.stallTimer = undefined;
      this.judgeStall(bufferedAtArm, false);
    }, this.writeStallMs);
  }

  /** A stall window ended (`bufferedAtArm` bytes waited when it began). `final`: already looked again. */
  private judgeStall(bufferedAtArm: number, final: boolean): void {
    const flushed = bufferedAtArm + this.queuedSinceArm - this.res.writableLength;
    if (flushed > 0) {
      // Moving: watch the next window, unless nothing waits any more ('drain' is on its way).
      if (this.res.writableLength > 0) this.armStallTimer();
    } else if (!final) {
      // Timers run before the event loop polls for I/O: a socket that flushed in this same turn
      // has not said so yet (its write callbacks and 'drain' come later in the turn). Look again
      // after them, in the check phase, before closing a stream that was only slow to report.
      this.stallCheck = this.clock.setImmediate(() => {
        this.stallCheck = undefined;
        this.judgeStall(bufferedAtArm, true);
      });
    } else {
      this.res.destroy();
      this.finish('write stalled');
    }
  }

  private disarmStallTimer(): void {
    this.clock.clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.clock.clearImmediate(this.stallCheck);
    this.stallCheck = undefined;
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.disarmStallTimer();
    for (const handler of this.closeHandlers) handler(reason);
  }
}
