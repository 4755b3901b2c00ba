import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { RedisClient } from '../queue/redis.js';
import { createDrainWorker } from './drain-worker.js';
import { SseSession } from './sse-session.js';
import { StreamHub } from './stream-hub.js';
import { createUserChannels } from './wake.js';

export interface DeliveryOptions {
  keyPrefix: string;
  /** DRAIN_INTERVAL_MS. */
  drainIntervalMs: number;
  /** ACK_TIMEOUT_MS. */
  ackTimeoutMs: number;
  /** MAX_INFLIGHT. */
  maxInflight: number;
  /** HEARTBEAT_MS. */
  heartbeatMs: number;
  /** RETRY_MS, sent first on every stream. */
  retryMs: number;
  /** WRITE_STALL_MS. */
  writeStallMs: number;
  /** Safety sweep period for lost wakes, ms (src/delivery/drain-worker.ts). @defaultValue 300000 */
  sweepPeriodMs?: number;
  /**
   * On shutdown each user's streams are told to come back after a uniform pick in [0, this)
   * (`postbox.restart {reconnectMs}`), so the pages of a stopped node reach the others, or this
   * one restarted, spread out rather than in one instant, ms. @defaultValue 1000
   */
  restartSpreadMs?: number;
}

/** What the routes need from delivery on this node. */
export interface Delivery {
  /** This node's id, as other nodes and the admin see it. */
  readonly nodeId: string;
  readonly hub: StreamHub;
  /**
   * Turns a response into the user's event stream and starts delivering to it. `announceEvents`:
   * the stream names each event before its first message (see SseSessionOptions); with `notices`,
   * it first gets `postbox.counts` and, when messages expired unwritten, `postbox.expired`.
   */
  openStream(
    userId: string,
    res: ServerResponse | Http2ServerResponse,
    options?: { announceEvents?: boolean; notices?: boolean },
  ): SseSession;
  /** An enqueue found this node alone holding the user: nothing was published, wake the drain here. */
  enqueuedHere(userId: string, id: string): void;
  /**
   * Messages of the user were acked through this node. Their other tabs here are told
   * (`postbox.acked`); other nodes were told by the ack itself (ack.lua). `wake` when the
   * ack reopened a full window.
   */
  acked(userId: string, ids: string[], wake: boolean): void;
  /** Drain this user now, on whichever node holds their streams (e.g. an admin freed an in-flight slot). */
  wakeAnywhere(userId: string): void;
  /** Resolves when the drain pass or catch-up under way, if any, is done (tests). */
  idle(): Promise<void>;
  /**
   * Ends every stream (browsers reconnect elsewhere). On `shutdown` each is first sent
   * `postbox.restart {reconnectMs}` (no id), which the client library obeys; a plain
   * EventSource comes back after the stream's `retry:` anyway.
   */
  closeStreams(reason: string): void;
  close(): Promise<void>;
}

/**
 * Everything that turns mailbox entries into SSE frames on this node: the
 * streams (hub and sessions), the drain worker, and the users' channels
 * (wakes, what other nodes wrote, what was acked elsewhere). `subscriber` is
 * a dedicated pub/sub connection.
 */
export function createDelivery(deps: {
  mailbox: Mailbox;
  redis: RedisClient;
  subscriber: RedisClient;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  nodeId: string;
  options: DeliveryOptions;
}): Delivery {
  const { mailbox, redis, subscriber, clock, logger, metrics, nodeId, options } = deps;
  const hub = new StreamHub(clock, options.heartbeatMs);
  // Both series exist from the start, so "no peer traffic" reads as 0.
  metrics.peerFrames.inc({ direction: 'sent' }, 0);
  metrics.peerFrames.inc({ direction: 'received' }, 0);
  const channels = createUserChannels({
    redis,
    subscriber,
    keyPrefix: options.keyPrefix,
    onMessage(userId, message) {
      switch (message.t) {
        case 'wake':
          return drain.wake(userId, message.id);
        case 'frames':
          if (message.from !== nodeId) drain.frames(userId, message.frames);
          return;
        case 'acked':
          if (message.from === nodeId) return;
          // Acked by a tab on another node, or through it: this node's tabs drop it too.
          if (message.ids.length > 0) hub.control(userId, 'acked', { ids: message.ids });
          drain.acked(userId, message.ids.length, message.wake);
          return;
      }
    },
  });
  const drain = createDrainWorker({
    mailbox,
    hub,
    channels,
    clock,
    logger,
    metrics,
    options: {
      drainIntervalMs: options.drainIntervalMs,
      ackTimeoutMs: options.ackTimeoutMs,
      maxInflight: options.maxInflight,
      ...(options.sweepPeriodMs === undefined ? {} : { sweepPeriodMs: options.sweepPeriodMs }),
    },
  });

  // One listener, so the order is explicit: metrics first, then the drain. On open the session
  // is held (catching up) before anything can be written to it; on the last close the drain
  // forgets the user before any later pass could write to streams that are gone.
  hub.onChange((session, event, reason) => {
    metrics.streamsOpen.set(hub.size);
    if (event === 'open') return drain.streamOpened(session);
    metrics.streamsClosed.inc({ reason });
    if (!hub.isConnected(session.userId)) drain.userLeft(session.userId);
  });
  // After a reconnect of the pub/sub connection, wakes sent meanwhile are lost: look at everyone once.
  let subscriberDown = false;
  // On a Redis Cluster the client stays ready while one shard's subscriber connection is gone:
  // ioredis ends it ('-node') and makes a new one after each slot refresh, then says
  // 'subscribersReady' whether the new one connected or not. A round that saw no failure before
  // its 'subscribersReady' subscribed again: everyone is looked at once. (The SSUBSCRIBEs are
  // sent by then, not yet confirmed: a wake in that instant is left to the sweep.)
  let failedThisRound = false;
  const onSubscriberError = () => {
    subscriberDown = true;
    failedThisRound = true;
  };
  const onSubscriberReady = () => {
    if (!subscriberDown) return;
    subscriberDown = false;
    drain.wakeAll();
  };
  const onSubscribersReady = () => {
    const failed = failedThisRound;
    failedThisRound = false;
    if (!failed) onSubscriberReady();
  };
  subscriber.on('error', onSubscriberError);
  subscriber.on('close', onSubscriberError);
  subscriber.on('-node', onSubscriberError);
  subscriber.on('ready', onSubscriberReady);
  subscriber.on('subscribersReady', onSubscribersReady);

  return {
    nodeId,
    hub,
    openStream(userId, res, stream = {}) {
      const session = new SseSession(userId, res, clock, {
        retryMs: options.retryMs,
        writeStallMs: options.writeStallMs,
        repeatWindowMs: options.ackTimeoutMs / 2,
        announceEvents: stream.announceEvents ?? false,
        notices: stream.notices ?? false,
      });
      hub.add(session);
      return session;
    },
    enqueuedHere(userId, id) {
      drain.wake(userId, id);
    },
    acked(userId, ids, wake) {
      if (ids.length === 0) return;
      // The tab that acked has them already; any other tab of the user here drops them.
      if (hub.count(userId) > 1) hub.control(userId, 'acked', { ids });
      drain.acked(userId, ids.length, wake);
    },
    wakeAnywhere(userId) {
      if (drain.holds(userId)) drain.wake(userId);
      channels.wake(userId).catch(() => undefined);
    },
    idle: () => drain.idle(),
    closeStreams(reason) {
      if (reason === 'shutdown') {
        const spread = options.restartSpreadMs ?? 1000;
        for (const userId of [...hub.users()]) {
          hub.control(userId, 'restart', { reconnectMs: Math.floor(Math.random() * spread) });
        }
      }
      hub.closeAll(reason);
    },
    async close() {
      hub.closeAll('shutdown');
      await drain.close();
      channels.close();
      subscriber.off('error', onSubscriberError);
      subscriber.off('close', onSubscriberError);
      subscriber.off('-node', onSubscriberError);
      subscriber.off('ready', onSubscriberReady);
      subscriber.off('subscribersReady', onSubscribersReady);
    },
  };
}
