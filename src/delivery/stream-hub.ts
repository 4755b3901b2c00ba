import type { Clock } from '../clock.js';
import type { SseFrame, SseSession } from './sse-session.js';

/**
 * The open streams of this node, grouped by user. The drain worker asks it
 * who is connected and hands it frames; one timer pings the streams that were quiet for a heartbeat.
 */
export class StreamHub {
  private readonly byUser = new Map<string, Set<SseSession>>();
  /** Streams in `byUser`, kept as they come and go: `size` is read on every open and close. */
  private open = 0;
  private readonly clock: Clock;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly heartbeatMs: number;
  private readonly listeners: Array<(session: SseSession, event: 'open' | 'close', reason: string) => void> = [];

  constructor(clock: Clock, heartbeatMs: number) {
    this.clock = clock;
    this.heartbeatMs = heartbeatMs;
    // Checked often, each stream pinged when it has been quiet for a heartbeat: the pings of
    // many streams spread out instead of leaving in one burst that stalls the event loop.
    this.heartbeat = clock.setInterval(() => this.pingQuiet(), Math.max(50, Math.min(1000, Math.floor(heartbeatMs / 4))));
    this.heartbeat.unref();
  }

  /** Called with every stream opened or closed, e.g. to start its delivery or count metrics. */
  onChange(listener: (session: SseSession, event: 'open' | 'close', reason: string) => void): void {
    this.listeners.push(listener);
  }

  add(session: SseSession): void {
    let set = this.byUser.get(session.userId);
    if (set === undefined) {
      set = new Set();
      this.byUser.set(session.userId, set);
    }
    set.add(session);
    this.open += 1;
    session.onClose((reason) => {
      if (set.delete(session)) this.open -= 1;
      if (set.size === 0 && this.byUser.get(session.userId) === set) this.byUser.delete(session.userId);
      for (const l of this.listeners) l(session, 'close', reason);
    });
    for (const l of this.listeners) l(session, 'open', '');
  }

  count(userId: string): number {
    return this.byUser.get(userId)?.size ?? 0;
  }

  /** Streams open on this node. */
  get size(): number {
    return this.open;
  }

  /** Users with a stream open on this node. */
  get userCount(): number {
    return this.byUser.size;
  }

  users(): IterableIterator<string> {
    return this.byUser.keys();
  }

  isConnected(userId: string): boolean {
    return this.byUser.has(userId);
  }

  /** Writes the frame to every open stream of the user; returns how many got it. */
  send(userId: string, frame: SseFrame): number {
    const set = this.byUser.get(userId);
    if (set === undefined) return 0;
    let n = 0;
    for (const session of set) {
      if (session.isOpen) {
        session.send(frame);
        n += 1;
      }
    }
    return n;
  }

  /** Writes a control event (`postbox.<name>`, no id) to every open stream of the user. */
  control(userId: string, name: string, data: unknown): void {
    const set = this.byUser.get(userId);
    if (set === undefined) return;
    for (const session of set) if (session.isOpen) session.control(name, data);
  }

  /** Ends every stream of one user on this node. */
  closeUser(userId: string, reason: string): void {
    for (const session of [...(this.byUser.get(userId) ?? [])]) session.close(reason);
  }

  /** Ends every stream (shutdown). */
  closeAll(reason: string): void {
    this.clock.clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const set of [...this.byUser.values()]) for (const session of [...set]) session.close(reason);
  }

  /** Pings every stream nothing was written to for a heartbeat. */
  private pingQuiet(): void {
    const due = this.clock.now() - this.heartbeatMs;
    for (const set of this.byUser.values()) for (const session of set) if (session.lastWriteAt <= due) session.ping();
  }
}
