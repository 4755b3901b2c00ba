import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per node, so tests can run several nodes in one process. */
export interface Metrics {
  registry: Registry;
  streamsOpen: Gauge;
  enqueued: Counter;
  delivered: Counter;
  redelivered: Counter;
  acked: Counter;
  dead: Counter;
  expired: Counter;
  /** From enqueue (the event id's time) to the first write on a stream, seconds. */
  enqueueToWrite: Histogram;
  streamsClosed: Counter<'reason'>;
  /** Frames passed between nodes for users with streams on several nodes (published by pop.lua, written by src/delivery/drain-worker.ts). */
  peerFrames: Counter<'direction'>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'postbox_' });
  const registers = [registry];
  return {
    registry,
    streamsOpen: new Gauge({ name: 'postbox_streams_open', help: 'Open SSE streams on this node', registers }),
    enqueued: new Counter({ name: 'postbox_messages_enqueued_total', help: 'Messages added to mailboxes', registers }),
    delivered: new Counter({
      name: 'postbox_messages_delivered_total',
      help: 'First deliveries written to streams',
      registers,
    }),
    redelivered: new Counter({
      name: 'postbox_messages_redelivered_total',
      help: 'Deliveries of messages already delivered before',
      registers,
    }),
    acked: new Counter({ name: 'postbox_messages_acked_total', help: 'Messages acknowledged', registers }),
    dead: new Counter({ name: 'postbox_messages_dead_total', help: 'Messages moved to dead letters', registers }),
    expired: new Counter({ name: 'postbox_messages_expired_total', help: 'Messages dropped past their TTL', registers }),
    enqueueToWrite: new Histogram({
      name: 'postbox_enqueue_to_write_seconds',
      help: 'Time from enqueue to the first write of a message on a stream',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    streamsClosed: new Counter({
      name: 'postbox_streams_closed_total',
      help: 'Streams closed, by reason',
      labelNames: ['reason'],
      registers,
    }),
    peerFrames: new Counter({
      name: 'postbox_peer_frames_total',
      help: 'Frames passed to (sent) or taken from (received) other nodes holding the same user',
      labelNames: ['direction'],
      registers,
    }),
  };
}
