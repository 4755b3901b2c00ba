import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Mailbox, PopRequest } from '../queue/mailbox.js';
import { enqueuedAtOf } from '../queue/keys.js';
import { createThrottledLog } from '../throttled-log.js';
import type { SseFrame } from './sse-session.js';
import type { StreamHub } from './stream-hub.js';

export interface DrainWorkerOptions {
  /** Tick period: the worst-case delay of a delivery and of a redelivery check, ms. */
  drainIntervalMs: number;
  /** In-flight messages idle this long are delivered again, ms. */
  ackTimeoutMs: number;
  /** MAX_INFLIGHT: an ack reopens the window only when it was full. */
  maxInflight: number;
  /** Every this many ticks, every connected user is drained even if nothing woke it. @defaultValue 10 */
  sweepEveryTicks?: number;
}

/** Lets nodes that share a user agree on which one drains it (src/delivery/peer-delivery.ts). */
export interface DrainHooks {
  /** False while this node must not pop for the user (another node drains it, or that is not known yet). */
  mayDrain(userId: string): boolean;
  /** Called after a pass wrote these frames to the user's streams on this node. */
  onDelivered(userId: string, frames: SseFrame[]): void;
}

export interface DrainWorker {
  /** A stream of this user opened on this node (called by src/delivery/delivery.ts). */
  streamOpened(userId: string): void;
  /** The user's last stream on this node closed. */
  userLeft(userId: string): void;
  /** Drain this user as soon as possible (an enqueue for them). */
  wake(userId: string): void;
  /**
   * `count` of the user's messages were acked. Returns false when this node
   * does not drain the user (not connected here, or another node pops for
   * them): the caller must wake whoever does. A pass follows only when the
   * window was full; otherwise there is nothing new to read (an enqueue wakes
   * the drain itself), so a typical ack costs no Redis round trip here.
   */
  acked(userId: string, count: number): boolean;
  /** Resolves when the pass under way (if any) and those it scheduled are done. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

interface UserState {
  /** First stream just opened: take back everything in flight (it was written to streams now closed). */
  resume: boolean;
  /** Known to have messages in flight; they must be checked for the ack timeout. */
  inflight: number;
  /** Woken, or the last pop filled the window: there may be more to read. */
  dirty: boolean;
}

/**
 * Pops, for every user with an open stream on this node, the oldest messages
 * up to the in-flight window, in one pipelined round trip per pass, and writes
 * them to all the user's streams. Passes run on every tick and at once after a
 * wake, never two at a time.
 */
export function createDrainWorker(deps: {
  mailbox: Mailbox;
  hub: StreamHub;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  options: DrainWorkerOptions;
  hooks?: DrainHooks;
}): DrainWorker {
  const { mailbox, hub, clock, logger, metrics, options, hooks } = deps;
  const sweepEvery = options.sweepEveryTicks ?? 10;
  const users = new Map<string, UserState>();
  let ticks = 0;
  let running: Promise<void> | undefined;
  let again = false;
  let fullSweep = true;
  let closed = false;
  const failures = createThrottledLog(logger, clock, { message: 'drain pass failed; retrying on the next tick' });

  const timer = clock.setInterval(() => {
    ticks += 1;
    if (ticks % sweepEvery === 0) fullSweep = true;
    schedule(true);
  }, options.drainIntervalMs);

  function schedule(tick = false): void {
    if (closed) return;
    if (running !== undefined) {
      again = true;
      return;
    }
    running = pass(tick).finally(() => {
      running = undefined;
      if (again && !closed) {
        again = false;
        schedule();
      }
    });
  }

  async function pass(tick: boolean): Promise<void> {
    const requests: PopRequest[] = [];
    const sweep = fullSweep;
    for (const [userId, state] of users) {
      if (!(sweep || state.dirty || state.resume || (tick && state.inflight > 0))) continue;
      // Skipped users keep their flags, so they are drained once this node may.
      if (hooks !== undefined && !hooks.mayDrain(userId)) continue;
      requests.push({ userId, minIdleMs: state.resume ? 0 : options.ackTimeoutMs });
    }
    if (requests.length === 0) return;
    fullSweep = false;
    for (const r of requests) {
      const state = users.get(r.userId);
      if (state) {
        state.dirty = false;
        state.resume = false;
      }
    }
    /** Keeps a user marked, to be tried again on the next tick; its streams stay open. */
    const retryLater = (r: PopRequest) => {
      const state = users.get(r.userId);
      if (state === undefined) return;
      state.dirty = true;
      if (r.minIdleMs === 0) state.resume = true;
    };
    let results;
    try {
      results = await mailbox.pop(requests);
    } catch (err) {
      // Redis away: every user waits for the next tick.
      requests.forEach(retryLater);
      fullSweep = sweep || fullSweep;
      failures.failed(err);
      return;
    }
    const now = clock.now();
    let failedUsers = 0;
    for (const r of requests) {
      const { userId } = r;
      const result = results.get(userId);
      if (result === undefined || result instanceof Error) {
        // One user's failure (a script error, a key moving between shards) is that user's alone.
        retryLater(r);
        failedUsers += 1;
        failures.failed(result ?? new Error('no pop result'), { userId });
        continue;
      }
      const state = users.get(userId);
      if (state) {
        state.inflight = result.inflight;
        if (result.more) state.dirty = true;
      }
      const frames: SseFrame[] = [];
      for (const d of result.deliveries) {
        const frame = { id: d.id, event: d.event, data: d.data };
        hub.send(userId, frame);
        frames.push(frame);
        if (d.deliveries === 1) {
          metrics.delivered.inc();
          metrics.enqueueToWrite.observe(Math.max(0, now - enqueuedAtOf(d.id)) / 1000);
        } else {
          metrics.redelivered.inc();
        }
      }
      if (hooks !== undefined && frames.length > 0) hooks.onDelivered(userId, frames);
      if (result.more) again = true;
    }
    if (failedUsers === 0) failures.succeeded();
  }

  return {
    streamOpened(userId) {
      const state = users.get(userId);
      if (state === undefined) {
        users.set(userId, { resume: true, inflight: 0, dirty: true });
      } else {
        state.dirty = true;
      }
      schedule();
    },
    userLeft(userId) {
      users.delete(userId);
    },
    wake(userId) {
      const state = users.get(userId);
      if (state === undefined) return;
      state.dirty = true;
      schedule();
    },
    acked(userId, count) {
      const state = users.get(userId);
      if (state === undefined || (hooks !== undefined && !hooks.mayDrain(userId))) return false;
      const wasFull = state.inflight >= options.maxInflight;
      state.inflight = Math.max(0, state.inflight - count);
      if (wasFull) {
        state.dirty = true;
        schedule();
      }
      return true;
    },
    async idle() {
      while (running !== undefined) await running;
    },
    async close() {
      closed = true;
      clock.clearInterval(timer);
      while (running !== undefined) await running;
    },
  };
}
