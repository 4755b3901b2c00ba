import type { ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';

export interface SseSessionOptions {
  /** Sent first as `retry:`; browsers wait this long before reconnecting, ms. */
  retryMs: number;
  /** A socket whose buffer stays full this long is closed, ms. */
  writeStallMs: number;
}

export interface SseFrame {
  id: string;
  event: string;
  /** One line of JSON: JSON.stringify never emits a raw CR or LF. */
  data: string;
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
  private readonly res: ServerResponse;
  private readonly clock: Clock;
  private readonly writeStallMs: number;
  private stallTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly closeHandlers: Array<(reason: string) => void> = [];

  constructor(userId: string, res: ServerResponse, clock: Clock, options: SseSessionOptions) {
    this.userId = userId;
    this.res = res;
    this.clock = clock;
    this.openedAt = clock.now();
    this.writeStallMs = options.writeStallMs;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    res.socket?.setKeepAlive(true);
    res.on('close', () => this.finish('client closed'));
    res.on('drain', () => {
      this.clock.clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
    });
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

  send(frame: SseFrame): boolean {
    return this.write(`id: ${frame.id}\nevent: ${frame.event}\ndata: ${frame.data}\n\n`);
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
    const ok = this.res.write(text);
    if (!ok && this.stallTimer === undefined) {
      this.stallTimer = this.clock.setTimeout(() => {
        this.res.destroy();
        this.finish('write stalled');
      }, this.writeStallMs);
    }
    return ok;
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.clock.clearTimeout(this.stallTimer);
    for (const handler of this.closeHandlers) handler(reason);
  }
}
