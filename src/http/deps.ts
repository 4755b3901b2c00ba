import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Delivery } from '../delivery/delivery.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RateSampler } from '../metrics/rate-sampler.js';
import type { AdminQueries } from '../queue/admin/admin-queries.js';
import type { Mailbox } from '../queue/mailbox.js';
import type { PushAck } from '../queue/push-ack.js';
import type { PushSubscriptions } from '../queue/push-subscriptions.js';
import type { StatusQueries } from '../queue/receipts.js';
import type { RedisClient } from '../queue/redis.js';
import type { Rooms } from '../queue/rooms.js';
import type { Schedules } from '../queue/schedules.js';
import type { WebhookStats } from '../queue/webhook-stats.js';
import type { PushCredentials } from './push-credentials.js';
import type { Tokens } from './tokens.js';

/** Web Push, when it is on (the VAPID keys are set). */
export interface PushDeps {
  /** VAPID_PUBLIC_KEY, the browser's applicationServerKey. */
  publicKey: string;
  subscriptions: PushSubscriptions;
  /** Throws (with the reason) unless the endpoint may be stored (src/workers/push-endpoint.ts). */
  checkEndpoint(endpoint: string): Promise<void>;
  /** Ack credentials of pushes, accepted by POST /v1/acks for their one message. */
  credentials: PushCredentials;
  /** The ack such a credential makes: its message, in flight or still waiting. */
  ack: PushAck;
}

/** Everything the HTTP layer needs, injected; it never reads process.env. */
export interface AppDeps {
  config: Config;
  /** The command connection, for readiness. */
  redis: RedisClient;
  mailbox: Mailbox;
  /** Streams, acks' follow-up and wakes on this node. */
  delivery: Delivery;
  tokens: Tokens;
  metrics: Metrics;
  /** Scheduled and recurring messages (BullMQ). */
  schedules: Schedules;
  /** Room membership and room messages (fanned out by a BullMQ job). */
  rooms: Rooms;
  /** What became of messages (receipts), and a user's counts. */
  status: StatusQueries;
  /** The webhooks block of /admin/stats. */
  webhooks: { read(): Promise<WebhookStats> };
  /** The admin's reads and repairs. */
  admin: AdminQueries;
  /** Every BullMQ queue, for bull-board under /admin/jobs. */
  jobQueues: Queue[];
  /** Counter samples for the admin's rates and chart, and the open streams of every node. */
  rates: RateSampler;
  /** Web Push; undefined when it is off. */
  push?: PushDeps | undefined;
  logger: Logger;
  clock: Clock;
  /** True once shutdown began: new streams are refused. */
  isClosing(): boolean;
}
