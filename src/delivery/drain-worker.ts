import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { compareIds, enqueuedAtOf } from '../queue/keys.js';
import type { Mailbox, PopResult } from '../queue/mailbox.js';
import { createThrottledLog } from '../throttled-log.js';
import type { SseFrame, SseSession } from './sse-session.js';
import type { StreamHub } from './stream-hub.js';
import type { UserChannels } from './wake.js';

export interface DrainWorkerOptions {
  /** Tick period: how often deadlines are looked at, ms (DRAIN_INTERVAL_MS). */
  drainIntervalMs: number;
  /** ACK_TIMEOUT_MS. */
  ackTimeoutMs: number;
  /** MAX_INFLIGHT. */
  maxInflight: number;
  /**
   * Every connected user is popped once per this period even if nothing woke
   * it, in case a wake was lost (pub/sub is at most once), ms. Spread over the
   * period, so its cost is users / period, not a burst. @defaultValue 300000
   */
  sweepPeriodMs?: number;
}

/** What the drain reads from Redis (src/queue/mailbox.ts), so a test can hand it a fake one. */
export type DrainMailbox = Pick<Mailbox, 'pop' | 'join' | 'release'>;
/** What the drain writes to (src/delivery/stream-hub.ts). */
export type DrainHub = Pick<StreamHub, 'send' | 'closeUser'>;
/** The part of a stream the drain drives: its catch-up. */
export type DrainSession = Pick<SseSession, 'userId' | 'hold' | 'release' | 'notices' | 'control'>;

export interface DrainWorker {
  /** A stream opened: it catches up on what is in flight, then gets what is popped. */
  streamOpened(session: DrainSession): void;
  /** The user's last stream on this node closed. */
  userLeft(userId: string): void;
  /** Something was enqueued for the user (`id`: its event id, when known). */
  wake(userId: string, id?: string): void;
  /** Frames the node draining the user wrote, for this node's streams of the user. */
  frames(userId: string, frames: SseFrame[]): void;
  /** Messages of the user were acked (here or elsewhere); `wake` when that reopened a full window. */
  acked(userId: string, count: number, wake: boolean): void;
  /** Whether the user has streams on this node. */
  holds(userId: string): boolean;
  /** Every user may have missed a wake (the pub/sub connection came back): pop each once. */
  wakeAll(): void;
  /** Resolves when no pass or join is under way. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

interface UserState {
  /** This node is in the user's registry (its first join succeeded), so pops may run. */
  joined: boolean;
  /** Sessions waiting for their catch-up. */
  joining: DrainSession[];
  /** Woken: there may be new messages to read. */
  dirty: boolean;
  /** The highest event id read for the user: a wake for an id at or below it brings nothing new. */
  readUpTo: string;
  /** In flight as of the last pop. */
  inflight: number;
  /** When the next in-flight message reaches the ack timeout (epoch ms); Infinity if none is known. */
  dueAt: number;
  /** Other nodes hold the user. */
  shared: boolean;
  /** Another node holds the drain lease: do not pop before then unless an explicit wake says so. */
  notBefore: number;
  /** Next safety pop (lost wakes). */
  sweepAt: number;
  /**
   * A pop of the user failed: its script may have run in Redis with the reply lost, taking
   * messages into flight that no stream was written. What is in flight is read again, and
   * written, before the next pop (which would leave them until their ack timeout).
   */
  unsure: boolean;
}

/**
 * Pops, for the users with streams on this node, what is due: new messages
 * after a wake, in-flight ones whose ack timeout this node knows has passed
 * (it wrote them, or the pop told it when the next one is due), and a slow
 * sweep in case a wake was lost. Idle connected users cost nothing per tick
 * but a comparison; the Redis work follows the messages, not the connections.
 *
 * Passes run one at a time; each pops every user that needs it at once (one
 * command per user, one write per Redis node) and writes the results to the
 * user's streams here.
 *
 * A stream that opens first catches up: it registers this node for the user
 * (the first one) and is written what is in flight before anything newer,
 * so it misses nothing another tab or node was sent meanwhile (join.lua).
 * Per user, joins and releases run in order, so a user who leaves and comes
 * back at once is never left out of the registry by a late release.
 */
export function createDrainWorker(deps: {
  mailbox: DrainMailbox;
  hub: DrainHub;
  channels: Pick<UserChannels, 'subscribe' | 'unsubscribe' | 'wake'>;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  options: DrainWorkerOptions;
  /** For the sweep's spread. @defaultValue Math.random */
  random?: () => number;
}): DrainWorker {
  const { mailbox, hub, channels, clock, logger, metrics, options } = deps;
  const random = deps.random ?? Math.random;
  const sweepPeriodMs = options.sweepPeriodMs ?? 300_000;
  const users = new Map<string, UserState>();
  /** Per user, the last join or release under way: the next one waits for it. */
  const chains = new Map<string, Promise<void>>();
  const dirty = new Set<string>();
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  const passFailures = createThrottledLog(logger, clock, { message: 'drain pass failed; retrying on the next tick' });
  const joinFailures = createThrottledLog(logger, clock, { message: 'stream catch-up failed; retrying on the next tick' });
  const rereadFailures = createThrottledLog(logger, clock, {
    message: 'reading what is in flight after a failed pop failed; retrying on the next tick',
  });

  function state(userId: string): UserState {
    let s = users.get(userId);
    if (s === undefined) {
      s = {
        joined: false,
        joining: [],
        dirty: true,
        readUpTo: '0-0',
        inflight: 0,
        dueAt: Infinity,
        shared: false,
        notBefore: 0,
        sweepAt: clock.now() + random() * sweepPeriodMs,
        unsure: false,
      };
      users.set(userId, s);
    }
    return s;
  }

  function markDirty(userId: string, s: UserState): void {
    s.dirty = true;
    dirty.add(userId);
    schedule();
  }

  /** Runs `task` after the user's previous join or release, never two at once for one user. */
  function chain(userId: string, task: () => Promise<void>): Promise<void> {
    const previous = chains.get(userId) ?? Promise.resolve();
    const next = previous.then(task, task).finally(() => {
      if (chains.get(userId) === next) chains.delete(userId);
    });
    chains.set(userId, next);
    return next;
  }

  function join(userId: string): void {
    void chain(userId, async () => {
      const s = users.get(userId);
      if (s === undefined || s.joining.length === 0 || closed) return;
      const sessions = s.joining;
      s.joining = [];
      const first = !s.joined;
      try {
        // Subscribed before joining: whatever is published after the join reaches this node.
        if (first) await channels.subscribe(userId);
        const joined = await mailbox.join(userId, { first, notices: sessions.some((session) => session.notices) });
        joinFailures.succeeded();
        if (users.get(userId) !== s) {
          // The user left while the join ran: leave again, in order.
          if (first) void leave(userId, true);
          return;
        }
        s.joined = true;
        s.shared = joined.others > 0;
        const now = clock.now();
        const frames: SseFrame[] = [];
        for (const d of joined.inflight) {
          frames.push({ id: d.id, event: d.event, data: d.data });
          if (compareIds(d.id, s.readUpTo) > 0) s.readUpTo = d.id;
          s.dueAt = Math.min(s.dueAt, now + Math.max(0, options.ackTimeoutMs - d.idleMs));
        }
        s.inflight = Math.max(s.inflight, joined.inflight.length);
        // Alone, a first join claimed them: written to streams now closed, they are written again.
        if (first && joined.others === 0 && frames.length > 0) metrics.redelivered.inc(frames.length);
        for (const session of sessions) {
          // Before the catch-up: what the page may show first (a badge, "you missed N messages").
          if (session.notices && joined.notices !== undefined) {
            session.control('counts', joined.notices.counts);
            if (joined.notices.expired.count > 0) session.control('expired', joined.notices.expired);
          }
          session.release(frames);
        }
        markDirty(userId, s);
      } catch (err) {
        joinFailures.failed(err, { userId });
        if (users.get(userId) === s) s.joining.unshift(...sessions);
      }
    });
  }

  /**
   * After a failed pop: reads what is in flight for the user (join.lua, without registering or
   * claiming) and writes it to the user's streams here, so what a pop whose reply was lost took
   * is written now. What the streams already had may come again: the session's repeat window
   * and the client drop repeats. Then the user is popped again.
   */
  function reread(userId: string): void {
    void chain(userId, async () => {
      const s = users.get(userId);
      if (s === undefined || !s.unsure || closed) return;
      try {
        const joined = await mailbox.join(userId, { first: false });
        rereadFailures.succeeded();
        if (users.get(userId) !== s) return;
        s.unsure = false;
        s.shared = joined.others > 0;
        const now = clock.now();
        for (const d of joined.inflight) {
          hub.send(userId, { id: d.id, event: d.event, data: d.data });
          if (compareIds(d.id, s.readUpTo) > 0) s.readUpTo = d.id;
          s.dueAt = Math.min(s.dueAt, now + Math.max(0, options.ackTimeoutMs - d.idleMs));
        }
        s.inflight = Math.max(s.inflight, joined.inflight.length);
        markDirty(userId, s);
      } catch (err) {
        // Still unsure and dirty: the next tick's pass tries again.
        rereadFailures.failed(err, { userId });
      }
    });
  }

  function leave(userId: string, registered: boolean): Promise<void> {
    return chain(userId, async () => {
      if (users.has(userId)) return; // back already: the new state's join keeps the registration
      await channels.unsubscribe(userId).catch(() => undefined);
      if (!registered) return;
      // A failure leaves a stale registry entry; the next pop that publishes finds it gone (pop.lua).
      const others = await mailbox.release(userId).catch(() => 0);
      // The lease, if it was ours, is free: the other nodes take over now rather than when it runs out.
      if (others > 0) await channels.wake(userId).catch(() => undefined);
    });
  }

  const timer = clock.setInterval(() => {
    const now = clock.now();
    let due = false;
    for (const [userId, s] of users) {
      if (!s.joined) {
        if (s.joining.length > 0 && !chains.has(userId)) join(userId); // a failed catch-up, again
        continue;
      }
      if (s.dirty || (s.dueAt <= now && now >= s.notBefore) || (s.shared && s.notBefore > 0 && s.notBefore <= now)) {
        // Until the pop answers (it says when the next one is due), a slow pass is not asked for again.
        s.dueAt = Infinity;
        s.notBefore = 0;
        dirty.add(userId);
        due = true;
      } else if (s.sweepAt <= now) {
        s.sweepAt = now + sweepPeriodMs;
        dirty.add(userId);
        due = true;
      }
    }
    if (due) schedule();
  }, options.drainIntervalMs);

  function schedule(): void {
    if (closed) return;
    if (running !== undefined) {
      again = true;
      return;
    }
    running = pass().finally(() => {
      running = undefined;
      if (again && !closed) {
        again = false;
        schedule();
      }
    });
  }

  async function pass(): Promise<void> {
    const ids: string[] = [];
    for (const userId of dirty) {
      const s = users.get(userId);
      if (s === undefined || !s.joined) continue;
      if (s.unsure) {
        // Dirty until the re-read succeeds; it pops the user again when it does.
        if (!chains.has(userId)) reread(userId);
        continue;
      }
      ids.push(userId);
      s.dirty = false;
    }
    dirty.clear();
    if (ids.length === 0) return;
    let results: Map<string, PopResult | Error>;
    try {
      results = await mailbox.pop(ids);
    } catch (err) {
      // Redis away: every user waits for the next tick; streams stay open.
      for (const userId of ids) {
        const s = users.get(userId);
        if (s !== undefined) {
          s.dirty = true;
          s.unsure = true;
        }
      }
      passFailures.failed(err);
      return;
    }
    const now = clock.now();
    let failed = 0;
    for (const userId of ids) {
      const s = users.get(userId);
      const result = results.get(userId);
      if (s === undefined) continue;
      if (result === undefined || result instanceof Error) {
        // One user's failure (a script error, a key moving between shards, a reply lost) is that user's alone.
        s.dirty = true;
        s.unsure = true;
        failed += 1;
        passFailures.failed(result ?? new Error('no pop result'), { userId });
        continue;
      }
      apply(userId, s, result, now);
    }
    if (failed === 0) passFailures.succeeded();
  }

  function apply(userId: string, s: UserState, result: PopResult, now: number): void {
    if (result.status === 'empty') {
      s.inflight = 0;
      s.dueAt = Infinity;
      return;
    }
    if (result.status === 'not-mine') {
      // Another node pops and publishes; look again when its lease would have run out.
      s.shared = true;
      s.notBefore = now + result.waitMs;
      return;
    }
    s.shared = result.shared;
    s.notBefore = 0;
    s.inflight = result.inflight;
    s.dueAt = result.nextDueMs === undefined ? Infinity : now + result.nextDueMs;
    if (result.shared && result.deliveries.length > 0) metrics.peerFrames.inc({ direction: 'sent' }, result.deliveries.length);
    for (const d of result.deliveries) {
      hub.send(userId, { id: d.id, event: d.event, data: d.data });
      if (compareIds(d.id, s.readUpTo) > 0) s.readUpTo = d.id;
      if (d.attempts === 1) {
        metrics.delivered.inc();
        metrics.enqueueToWrite.observe(Math.max(0, now - enqueuedAtOf(d.id)) / 1000);
      } else {
        metrics.redelivered.inc();
      }
    }
    if (result.unresponsive > 0) {
      // Written, past the ack timeout, and the page acked nothing since: its streams are not being
      // read. Close them rather than write again; what they had waits for the next stream.
      hub.closeUser(userId, 'unresponsive');
      return;
    }
    if (result.more) {
      s.dirty = true;
      dirty.add(userId);
      again = true;
    }
  }

  return {
    streamOpened(session) {
      if (closed) return;
      const s = state(session.userId);
      session.hold();
      s.joining.push(session);
      join(session.userId);
    },
    userLeft(userId) {
      const s = users.get(userId);
      if (s === undefined) return;
      users.delete(userId);
      dirty.delete(userId);
      void leave(userId, s.joined);
    },
    wake(userId, id) {
      const s = users.get(userId);
      if (s === undefined) return;
      // Already read (our own pass, or the popper's frames): nothing new behind this wake.
      if (id !== undefined && compareIds(id, s.readUpTo) <= 0) return;
      // Another node holds the lease and pops on the same wake; explicit wakes (no id) always try.
      if (id !== undefined && s.shared && clock.now() < s.notBefore) return;
      if (id === undefined) s.notBefore = 0;
      markDirty(userId, s);
    },
    frames(userId, frames) {
      const s = users.get(userId);
      if (s === undefined) return;
      for (const frame of frames) {
        hub.send(userId, frame);
        if (compareIds(frame.id, s.readUpTo) > 0) s.readUpTo = frame.id;
      }
      s.shared = true;
      metrics.peerFrames.inc({ direction: 'received' }, frames.length);
    },
    acked(userId, count, wake) {
      const s = users.get(userId);
      if (s === undefined) return;
      const wasFull = s.inflight >= options.maxInflight;
      s.inflight = Math.max(0, s.inflight - count);
      if (wake || wasFull) {
        s.notBefore = 0;
        markDirty(userId, s);
      }
    },
    holds: (userId) => users.has(userId),
    wakeAll() {
      for (const [userId, s] of users) {
        s.notBefore = 0;
        s.dirty = true;
        dirty.add(userId);
      }
      schedule();
    },
    async idle() {
      for (;;) {
        const busy = [running, ...chains.values()].filter((p): p is Promise<void> => p !== undefined);
        if (busy.length === 0) return;
        await Promise.allSettled(busy);
      }
    },
    async close() {
      closed = true;
      clock.clearInterval(timer);
      while (running !== undefined) await running;
      const left = [...users].map(([userId, s]) => {
        users.delete(userId);
        return leave(userId, s.joined);
      });
      await Promise.allSettled([...left, ...chains.values()]);
    },
  };
}
