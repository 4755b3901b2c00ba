import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Keys } from '../queue/keys.js';
import { execPipelineSettled } from '../queue/pipeline.js';
import { scriptedPipeline, withScripts } from '../queue/scripts.js';
import { createThrottledLog } from '../throttled-log.js';
import type { DrainHooks } from './drain-worker.js';
import { isSafeFrame, type SseFrame } from './sse-session.js';
import type { StreamHub } from './stream-hub.js';

export interface PeerDeliveryOptions {
  /**
   * How long a claim to drain a shared user lasts, ms; it is renewed every
   * third of that. A node that dies holding it delays that user's messages by
   * at most this long. @defaultValue 3000
   */
  leaseMs?: number;
}

/** The drain hooks of this node, plus the stream events it follows and `close()`. */
export interface PeerDelivery extends DrainHooks {
  /** A stream of this user opened on this node. */
  streamOpened(userId: string): void;
  /** The user's last stream on this node closed. */
  userLeft(userId: string): void;
  close(): Promise<void>;
}

type PeerMessage = { t: 'hello' | 'bye'; from: string } | { t: 'frames'; from: string; frames: SseFrame[] };

interface PeerUser {
  channel: string;
  /** Subscribing and announcing: until it is known whether another node holds the user, nobody here pops. */
  pending: boolean;
  /** Another node is believed to hold streams of this user: only the lease holder pops, and it publishes. */
  shared: boolean;
  /** This node may drain the shared user until then (epoch ms, counted from when the claim was sent); 0 = not held. */
  ownedUntil: number;
  claiming: boolean;
}

/**
 * Makes every stream of a user get every message when the user's streams are
 * on several nodes. Each node holding a user subscribes to the user's channel
 * and says hello there. While a user is on one node only, nothing more
 * happens: its drain pops and writes as before. Once another node is seen
 * (its hello or its frames arrive, or our hello reached more than us), the
 * nodes holding the user agree through a lease in Redis on one of them to pop,
 * and that one publishes what it wrote; the others write it to their streams.
 * One popper keeps the order the same on every stream; two nodes popping
 * concurrently would each write their own part first. Acks need nothing: they
 * go to the shared mailbox by id. A lost publish is covered by redelivery
 * after ACK_TIMEOUT_MS, which the popper also publishes.
 */
export function createPeerDelivery(deps: {
  /** The pub/sub connection (ioredis resubscribes it after a reconnect). */
  subscriber: Redis;
  /** The command connection: publishes and lease calls. */
  redis: Redis;
  hub: StreamHub;
  keys: Keys;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** Drain the user now: it may have become ours to drain. */
  wake: (userId: string) => void;
  options?: PeerDeliveryOptions;
}): PeerDelivery {
  const { subscriber, hub, keys, nodeId, clock, logger, metrics, wake } = deps;
  const leaseMs = deps.options?.leaseMs ?? 3000;
  const redis = withScripts(deps.redis);
  const users = new Map<string, PeerUser>();
  const byChannel = new Map<string, string>();
  const hello = JSON.stringify({ t: 'hello', from: nodeId });
  const bye = JSON.stringify({ t: 'bye', from: nodeId });
  let closed = false;
  // Both series exist from the start, so "no peer traffic" reads as 0.
  metrics.peerFrames.inc({ direction: 'sent' }, 0);
  metrics.peerFrames.inc({ direction: 'received' }, 0);
  const failures = createThrottledLog(logger, clock, {
    message: 'peer delivery: redis call failed; redelivery covers what was lost',
    level: 'debug',
  });
  const failed = (err: unknown) => failures.failed(err);

  const owns = (state: PeerUser) => state.ownedUntil > clock.now();

  /** Takes or renews the lease of these users in one round trip; wakes the drain of those it gained. */
  function claim(list: Array<[string, PeerUser]>): void {
    const todo = list.filter(([, state]) => !state.claiming);
    if (todo.length === 0 || closed) return;
    const sentAt = clock.now();
    const pipeline = scriptedPipeline(redis);
    for (const [userId, state] of todo) {
      state.claiming = true;
      pipeline.pbLeaseClaim(keys.drainer(userId), nodeId, leaseMs);
    }
    const settle = (replies: Awaited<ReturnType<typeof execPipelineSettled<number>>>) => {
      todo.forEach(([userId, state], i) => {
        state.claiming = false;
        const reply = replies[i];
        if (reply === undefined || !reply.ok) return failed(reply?.error ?? new Error('no reply'));
        if (users.get(userId) !== state) return;
        const had = owns(state);
        state.ownedUntil = reply.value === 1 ? sentAt + leaseMs : 0;
        if (reply.value === 1 && !had) wake(userId);
      });
    };
    execPipelineSettled<number>(pipeline).then(settle, (err: unknown) => {
      failed(err);
      settle(todo.map(() => ({ ok: false, error: err as Error })));
    });
  }

  function opened(userId: string): void {
    if (users.has(userId)) return;
    const channel = keys.deliverChannel(userId);
    const state: PeerUser = { channel, pending: true, shared: false, ownedUntil: 0, claiming: false };
    users.set(userId, state);
    byChannel.set(state.channel, userId);
    // Subscribed before saying hello, so nothing published for the user after the hello is missed.
    subscriber
      .subscribe(state.channel)
      .then(() => (users.get(userId) === state ? redis.publish(state.channel, hello) : 0))
      .then(
        (receivers) => {
          // The count includes this node. A newcomer leaves the claim to the renewal timer, so the
          // node already draining the user (which claims when the hello arrives) normally keeps it.
          if (receivers > 1) state.shared = true;
        },
        (err: unknown) => {
          failed(err);
          // Unknown: assume shared; a claim and one publish will tell.
          state.shared = true;
        },
      )
      .finally(() => {
        if (users.get(userId) !== state) return;
        state.pending = false;
        wake(userId);
      });
  }

  function lastClosed(userId: string): void {
    const state = users.get(userId);
    if (state === undefined) return;
    users.delete(userId);
    byChannel.delete(state.channel);
    subscriber.unsubscribe(state.channel).catch(failed);
    if (state.ownedUntil > 0) {
      // Hand over at once rather than after the lease runs out; the release is sent before the bye.
      redis.pbLeaseRelease(keys.drainer(userId), nodeId).catch(failed);
      if (state.shared) redis.publish(state.channel, bye).catch(failed);
    }
  }

  function onMessage(channel: string, text: string): void {
    const userId = byChannel.get(channel);
    if (userId === undefined) return;
    const state = users.get(userId);
    const message = parse(text);
    if (state === undefined || message === undefined || message.from === nodeId) return;
    const wasShared = state.shared;
    state.shared = true;
    if (message.t === 'frames') {
      for (const frame of message.frames) hub.send(userId, frame);
      metrics.peerFrames.inc({ direction: 'received' }, message.frames.length);
      // Frames while we thought we were alone: two nodes popped; settle who drains.
      if (!wasShared) claim([[userId, state]]);
    } else {
      // A node arrived (hello) or the drainer left (bye): claim now (renews, if already ours).
      claim([[userId, state]]);
    }
  }

  function onReady(): void {
    // ioredis has resubscribed after a reconnect; while it was away, nodes may have come and gone.
    // Assume every user shared until a publish shows otherwise, and announce again so peers do too.
    const list = [...users].filter(([, state]) => !state.pending);
    if (list.length === 0) return;
    const pipeline = redis.pipeline();
    for (const [, state] of list) {
      state.shared = true;
      pipeline.publish(state.channel, hello);
    }
    pipeline.exec().catch(failed);
    claim(list);
  }

  subscriber.on('message', onMessage);
  subscriber.on('ready', onReady);

  const renewal = clock.setInterval(() => {
    const list = [...users].filter(([, state]) => state.shared && !state.pending);
    claim(list);
  }, Math.max(1, Math.floor(leaseMs / 3)));

  return {
    streamOpened(userId) {
      if (!closed) opened(userId);
    },
    userLeft(userId) {
      if (!closed) lastClosed(userId);
    },
    mayDrain(userId) {
      const state = users.get(userId);
      if (state === undefined || state.pending) return false;
      return !state.shared || owns(state);
    },
    onDelivered(userId, frames) {
      const state = users.get(userId);
      if (state === undefined || !state.shared) return;
      const text = JSON.stringify({ t: 'frames', from: nodeId, frames } satisfies PeerMessage);
      redis.publish(state.channel, text).then((receivers) => {
        if (receivers > 1) metrics.peerFrames.inc({ direction: 'sent' }, frames.length);
        // Only this node listens (and is surely subscribed): the others have gone; stop publishing.
        else if (users.get(userId) === state && subscriber.status === 'ready') state.shared = false;
      }, failed);
    },
    async close() {
      if (closed) return;
      for (const userId of [...users.keys()]) lastClosed(userId);
      closed = true;
      clock.clearInterval(renewal);
      subscriber.off('message', onMessage);
      subscriber.off('ready', onReady);
    },
  };
}

function parse(text: string): PeerMessage | undefined {
  try {
    const message = JSON.parse(text) as Partial<{ t: unknown; from: unknown; frames: unknown }>;
    if (typeof message.from !== 'string') return undefined;
    if (message.t === 'hello' || message.t === 'bye') return { t: message.t, from: message.from };
    if (message.t === 'frames' && Array.isArray(message.frames)) {
      // Whatever reaches the channel is checked as enqueue checks it before it can reach SSE framing.
      const frames = (message.frames as unknown[]).filter(isSafeFrame);
      return { t: 'frames', from: message.from, frames };
    }
  } catch {
    // not ours
  }
  return undefined;
}
