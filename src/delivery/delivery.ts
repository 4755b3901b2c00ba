import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Mailbox } from '../queue/mailbox.js';
import { createDrainWorker, type DrainWorker } from './drain-worker.js';
import { createPeerDelivery } from './peer-delivery.js';
import { SseSession } from './sse-session.js';
import { StreamHub } from './stream-hub.js';
import { createWake } from './wake.js';

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
  /** How long a claim to drain a user shared with other nodes lasts, ms. @defaultValue 3000 */
  leaseMs?: number;
}

/** What the routes need from delivery on this node. */
export interface Delivery {
  /** This node's id, as other nodes and the admin see it. */
  readonly nodeId: string;
  readonly hub: StreamHub;
  /** Turns a response into the user's event stream and starts delivering to it. */
  openStream(userId: string, res: ServerResponse | Http2ServerResponse): SseSession;
  /** `count` of the user's messages were acked: drain again if that reopened a full window, here or where the user is drained. */
  acked(userId: string, count: number): void;
  /** Drain this user now, on whichever node holds their streams (e.g. an admin freed an in-flight slot). */
  wakeAnywhere(userId: string): void;
  /** Resolves when the drain pass under way, if any, is done (tests). */
  idle(): Promise<void>;
  /** Ends every stream (browsers reconnect elsewhere) and stops the drain and the pub/sub listeners. */
  closeStreams(reason: string): void;
  close(): Promise<void>;
}

/**
 * Everything that turns mailbox entries into SSE frames on this node: the
 * streams (hub and sessions), the drain worker, wakes, and the peers protocol
 * for users whose streams are on several nodes. `subscriber` is a dedicated
 * pub/sub connection.
 */
export async function createDelivery(deps: {
  mailbox: Mailbox;
  redis: Redis;
  subscriber: Redis;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  nodeId: string;
  options: DeliveryOptions;
}): Promise<Delivery> {
  const { mailbox, redis, subscriber, clock, logger, metrics, nodeId, options } = deps;
  const hub = new StreamHub(clock, options.heartbeatMs);
  const wake = createWake({ redis, subscriber, keyPrefix: options.keyPrefix });
  // Peers call the drain back only once a Redis reply arrives, after `worker` below exists.
  const wakeDrain = (userId: string) => worker.wake(userId);
  const peers = createPeerDelivery({
    subscriber,
    redis,
    hub,
    keys: mailbox.keys,
    nodeId,
    clock,
    logger,
    metrics,
    wake: wakeDrain,
    options: options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs },
  });
  const worker: DrainWorker = createDrainWorker({
    mailbox,
    hub,
    clock,
    logger,
    metrics,
    options: { drainIntervalMs: options.drainIntervalMs, ackTimeoutMs: options.ackTimeoutMs, maxInflight: options.maxInflight },
    hooks: peers,
  });

  // One listener, so the order is explicit. On a user's first stream, peers record the user
  // as "pending" (nobody here pops until it is known whether another node holds them) before
  // the drain marks the user and schedules a pass: that pass asks peers.mayDrain and skips
  // the pending user, instead of popping before other nodes can hear of this one. On the
  // last close, peers leave the user's channel (handing over the lease) before the drain
  // forgets the user; a pass running meanwhile finds no streams and writes nothing.
  hub.onChange((userId, event, reason) => {
    metrics.streamsOpen.set(hub.size);
    if (event === 'open') {
      peers.streamOpened(userId);
      worker.streamOpened(userId);
      return;
    }
    metrics.streamsClosed.inc({ reason });
    if (!hub.isConnected(userId)) {
      peers.userLeft(userId);
      worker.userLeft(userId);
    }
  });
  await wake.subscribe((userId) => worker.wake(userId));

  return {
    nodeId,
    hub,
    openStream(userId, res) {
      const session = new SseSession(userId, res, clock, { retryMs: options.retryMs, writeStallMs: options.writeStallMs });
      hub.add(session);
      return session;
    },
    acked(userId, count) {
      // Room opened in the in-flight window: drain at once, here or on the node that pops for the user.
      if (count > 0 && !worker.acked(userId, count)) wake.publish(userId);
    },
    wakeAnywhere(userId) {
      wake.publish(userId);
    },
    idle: () => worker.idle(),
    closeStreams(reason) {
      hub.closeAll(reason);
    },
    async close() {
      hub.closeAll('shutdown');
      await worker.close();
      await peers.close();
      await wake.close();
    },
  };
}
