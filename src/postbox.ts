import type { Server } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { webhookSecret, type Config } from './config.js';
import { persistDevelopmentVapidKeys } from './dev-keys.js';
import { createDelivery, type Delivery } from './delivery/delivery.js';
import type { StreamHub } from './delivery/stream-hub.js';
import { userChannel } from './delivery/wake.js';
import { retryAfterSeconds } from './errors.js';
import { createApp } from './http/app.js';
import { createClientBuild } from './http/client-build.js';
import { clientRoutes } from './http/client-routes.js';
import { createDemo } from './http/demo-routes.js';
import type { PushDeps } from './http/deps.js';
import { createPushCredentials } from './http/push-credentials.js';
import { createTokens } from './http/tokens.js';
import { createWebServer, readTlsFiles, serverLimits } from './http/web-server.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { createRateSampler } from './metrics/rate-sampler.js';
import { createNodeId } from './node-id.js';
import { createAdminQueries } from './queue/admin/admin-queries.js';
import { createJobQueues, type PushJobData } from './queue/job-queues.js';
import type { Keys } from './queue/keys.js';
import { createMailbox } from './queue/mailbox.js';
import { createPushAck } from './queue/push-ack.js';
import { createPushDue } from './queue/push-due.js';
import { createPushJobs, type PushJobs } from './queue/push-jobs.js';
import { createPushSubscriptions } from './queue/push-subscriptions.js';
import { createStatusQueries, receiptSpec } from './queue/receipts.js';
import { connectRedis, createConnection, parseClusterNodes, type RedisClient, type RedisConnectionSettings } from './queue/redis.js';
import { checkRedis, redactRedisUrl } from './queue/redis-checks.js';
import { createRooms } from './queue/rooms.js';
import { createSchedules } from './queue/schedules.js';
import { createThrottledLog } from './throttled-log.js';
import { startJobWorkers } from './workers/job-services.js';
import { createWebhooks } from './workers/webhooks.js';
import { checkEndpoint } from './workers/push-endpoint.js';
import { createPushMetrics } from './workers/push-metrics.js';
import { createPushSender } from './workers/push-sender.js';

export interface Postbox {
  /** HTTP/1.1, or with TLS_CERT_FILE HTTPS serving HTTP/2 and HTTP/1.1. */
  readonly server: Server | Http2SecureServer;
  /**
   * `http://host:port` (`https://` with TLS) once listening, an address to connect to: when
   * listening on every interface (0.0.0.0, ::) it names loopback.
   */
  readonly url: string;
  /** The address really bound, `host:port` (`[::]:8080` for IPv6), once listening. */
  readonly boundAddress: string;
  /** This node's open streams. */
  readonly hub: StreamHub;
  /** The BullMQ queues (scheduled, fanout, housekeeping, and push when it is on). */
  readonly queues: Queue[];
  listen(port: number, host: string): Promise<string>;
  /** Graceful: stop accepting, end the streams, finish requests, stop the workers, close Redis. */
  close(): Promise<void>;
}

/** How long a graceful close lets requests under way finish before it cuts them, ms. */
const CLOSE_GRACE_MS = 5000;
/** How long a claim to drain a user whose streams are on several nodes lasts, ms; a node that dies holding it delays that user by at most this. */
const LEASE_MS = 3000;

/**
 * One postbox node: Redis connections, mailbox, delivery, jobs, HTTP server.
 * Both `main.ts` and the tests build nodes here, so they run the same wiring.
 */
export async function createPostbox(
  givenConfig: Config,
  options: {
    /** One Redis (ignored when REDIS_CLUSTER_NODES is set). */
    redisUrl: string;
    logger: Logger;
    clock?: Clock;
    defaultMetrics?: boolean;
    /** PEM certificates trusted for push services besides the public roots (a test push service). @defaultValue none */
    pushCa?: string;
    /**
     * How the start-up check names this Redis, and why it was chosen when nobody configured it
     * (see checkRedis). @defaultValue the URL without its password, or the cluster seeds; no fallback
     */
    redisReport?: { target?: string; fallback?: string };
  },
): Promise<Postbox> {
  const { logger } = options;
  // Development VAPID keys live beside the other development keys, so subscriptions survive a restart.
  const { config } = persistDevelopmentVapidKeys(givenConfig);
  // Before any connection is opened, so a bad path fails start-up with nothing to clean up.
  const tls = readTlsFiles(config);
  const clock = options.clock ?? systemClock;
  const nodeId = createNodeId();
  const settings: RedisConnectionSettings = {
    url: options.redisUrl,
    cluster: config.REDIS_CLUSTER_NODES === undefined ? undefined : parseClusterNodes(config.REDIS_CLUSTER_NODES),
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  };
  const redis = createConnection(settings, 'command');
  const subscriber = createConnection(settings, 'subscriber');
  for (const [name, conn] of [
    ['redis', redis],
    ['subscriber', subscriber],
  ] as const) {
    const log = createThrottledLog(logger.child({ connection: name }), clock, { message: 'redis connection error' });
    conn.on('error', (err: Error) => log.failed(err));
    conn.on('ready', () => log.succeeded());
  }
  try {
    await Promise.all([connectRedis(redis), connectRedis(subscriber)]);
    await checkRedis(redis, logger, {
      production: config.NODE_ENV === 'production',
      allowVolatile: config.ALLOW_VOLATILE_REDIS,
      cluster: settings.cluster !== undefined,
      keyPrefix: config.KEY_PREFIX,
      target:
        options.redisReport?.target ??
        (config.REDIS_CLUSTER_NODES === undefined
          ? redactRedisUrl(options.redisUrl)
          : `the Redis Cluster of REDIS_CLUSTER_NODES (${config.REDIS_CLUSTER_NODES})`),
      fallback: options.redisReport?.fallback,
    });
  } catch (err) {
    redis.disconnect();
    subscriber.disconnect();
    throw err;
  }

  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics ?? false });
  const channel = userChannel(config.KEY_PREFIX);
  // Called only once an enqueue's reply arrives, after `delivery` below exists.
  const wakeHere = (userId: string, id: string) => delivery.enqueuedHere(userId, id);
  // Receipts and webhook events are written by the scripts that ack, expire and dead-letter.
  const webhookUrl = config.WEBHOOK_URL;
  const spec = receiptSpec({
    retentionMs: config.RECEIPT_RETENTION_MS,
    maxPerUser: config.RECEIPTS_MAX_PER_USER,
    webhookEvents: webhookUrl === undefined ? [] : config.WEBHOOK_EVENTS,
  });
  const mailbox = createMailbox({
    redis,
    clock,
    metrics,
    options: {
      keyPrefix: config.KEY_PREFIX,
      queueMaxLength: config.QUEUE_MAX_LENGTH,
      dedupWindowMs: config.DEDUP_WINDOW_MS,
      ackTimeoutMs: config.ACK_TIMEOUT_MS,
      maxInflight: config.MAX_INFLIGHT,
      maxDeliveries: config.MAX_DELIVERIES,
      maxAttempts: config.MAX_ATTEMPTS,
      deadMaxLength: config.DEAD_MAX_LENGTH,
      retryAfterSeconds: retryAfterSeconds(config.ACK_TIMEOUT_MS),
      leaseMs: LEASE_MS,
      nodeId,
      userChannel: channel,
      onLocalEnqueue: wakeHere,
      receiptSpec: spec,
      // Called only once a script's reply arrives, after `outbox` below exists.
      onOutbox: (userId, events) => outbox.touched(userId, events),
      // Called only once an enqueue's reply arrives, after `pushJobs` below exists.
      onPushable: config.PUSH_ENABLED ? (messages) => (pushJobs as PushJobs).plan(messages) : undefined,
    },
  });
  const delivery: Delivery = createDelivery({
    mailbox,
    redis,
    subscriber,
    clock,
    logger,
    metrics,
    nodeId,
    options: {
      keyPrefix: config.KEY_PREFIX,
      drainIntervalMs: config.DRAIN_INTERVAL_MS,
      ackTimeoutMs: config.ACK_TIMEOUT_MS,
      maxInflight: config.MAX_INFLIGHT,
      heartbeatMs: config.HEARTBEAT_MS,
      retryMs: config.RETRY_MS,
      writeStallMs: config.WRITE_STALL_MS,
    },
  });
  const { hub } = delivery;
  const rates = createRateSampler({
    metrics,
    redis,
    clock,
    logger,
    node: nodeId,
    nodesKey: mailbox.keys.nodes(),
    load: () => ({ streams: hub.size, users: hub.userCount }),
  });
  const keys = mailbox.keys;
  const queues = await createJobQueues({
    redis: settings,
    keyPrefix: config.KEY_PREFIX,
    logger,
    clock,
    webhooks: { attempts: config.WEBHOOK_MAX_ATTEMPTS, backoffMs: config.WEBHOOK_BACKOFF_MS },
    push: config.PUSH_ENABLED,
  });
  const webhooks = createWebhooks({
    redis,
    keys,
    queue: queues.webhooks,
    registry: metrics.registry,
    clock,
    logger,
    nodeId,
    options: { url: webhookUrl, events: config.WEBHOOK_EVENTS, maxBacklog: config.WEBHOOK_MAX_BACKLOG },
  });
  const { outbox } = webhooks;
  if (webhookUrl !== undefined && config.WEBHOOK_SECRET === undefined) {
    logger.warn({ WEBHOOK_SECRET: webhookSecret(config) }, 'webhook secret derived from TOKEN_SECRET (development)');
  }
  const pushQueue = queues.push;
  const pushJobs: PushJobs | undefined = pushQueue && createPushJobs({ queue: pushQueue, redis, keys, pushAfterMs: config.PUSH_AFTER_MS });
  const push = pushQueue && wirePush(config, {
      redis,
      keys,
      clock,
      metrics,
      nodeId,
      channel,
      queue: pushQueue,
      ca: options.pushCa,
      spec,
      onOutbox: (userId, events) => outbox.touched(userId, events),
    });
  logger.info(
    push ? { pushAfterMs: config.PUSH_AFTER_MS, generatedKeys: config.VAPID_GENERATED } : {},
    push ? 'Web Push on' : 'Web Push off: no VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY, VAPID_SUBJECT',
  );
  const rooms = createRooms({ redis, keys, fanout: queues.fanout, clock });
  const schedules = createSchedules({ queues, redis, keys, clock });
  const status = createStatusQueries({ redis, keys, clock, schedules, options: { retentionMs: config.RECEIPT_RETENTION_MS } });
  const admin = createAdminQueries({
    redis,
    clock,
    keys,
    metrics,
    rooms,
    queues,
    userChannel: channel,
    options: {
      queueMaxLength: config.QUEUE_MAX_LENGTH,
      scanMaxUsers: config.ADMIN_SCAN_MAX_USERS,
      maxInflight: config.MAX_INFLIGHT,
    },
  });
  let jobs;
  try {
    jobs = await startJobWorkers({
      queues,
      redis,
      mailbox,
      rooms,
      metrics,
      logger,
      clock,
      options: {
        redis: settings,
        keyPrefix: config.KEY_PREFIX,
        lockMs: config.JOB_LOCK_MS,
        fanoutChunkSize: config.FANOUT_CHUNK_SIZE,
        fanoutDedupWindowMs: config.FANOUT_DEDUP_WINDOW_MS,
        housekeepingIntervalMs: config.HOUSEKEEPING_INTERVAL_MS,
        receiptSpec: spec,
        webhooks:
          webhookUrl === undefined
            ? undefined
            : { url: webhookUrl, secret: webhookSecret(config), timeoutMs: config.WEBHOOK_TIMEOUT_MS, metrics: webhooks.metrics },
      },
      onOutbox: (userId) => outbox.touched(userId),
      push: push?.worker,
    });
  } catch (err) {
    await outbox.close();
    await queues.close();
    throw err;
  }

  let closing = false;
  const tokens = createTokens(config.TOKEN_SECRET, clock);
  // The demo's backend calls this node's public API at its listening address, as an application would.
  const demo = config.DEMO
    ? createDemo({ apiUrl: () => url, apiKey: config.API_KEY, logger, clock, serverCert: tls?.cert })
    : undefined;
  // Built in the background when its source is newer (npm start does not wait for tsc); the
  // client routes wait for it.
  const client = createClientBuild({ root: fileURLToPath(new URL('../', import.meta.url)), logger });
  void client.ready();
  const app = createApp(
    {
      config,
      redis,
      mailbox,
      delivery,
      tokens,
      metrics,
      schedules,
      rooms,
      status,
      webhooks: webhooks.stats,
      admin,
      jobQueues: queues.all,
      rates,
      push: push?.routes,
      logger,
      clock,
      isClosing: () => closing,
    },
    [() => clientRoutes({ build: client }), ...(demo ? [() => demo.router] : [])],
  );
  const web = createWebServer(app.callback(), tls, serverLimits(config));
  const { server } = web;
  let url = '';
  let boundAddress = '';

  return {
    server,
    get url() {
      return url;
    },
    get boundAddress() {
      return boundAddress;
    },
    hub,
    queues: queues.all,
    async listen(port, host) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port, host, backlog: config.HTTP_LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      const v6 = address.family === 'IPv6';
      boundAddress = `${v6 ? `[${address.address}]` : address.address}:${address.port}`;
      // Every interface includes loopback, the one address sure to reach this node from itself.
      const connectable = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
      url = `${web.protocol}://${v6 && connectable.includes(':') ? `[${connectable}]` : connectable}:${address.port}`;
      return url;
    },
    async close() {
      if (closing) return;
      closing = true;
      demo?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Streams end cleanly; browsers reconnect (to another node) with Last-Event-ID.
      delivery.closeStreams('shutdown');
      web.closeIdle();
      await delivery.close();
      // What the last acks and pops wrote goes into jobs now; anything left waits in Redis.
      await outbox.close();
      await rates.close();
      await jobs.close();
      await queues.close();
      // Requests under way may finish; keep-alive sockets that fall idle meanwhile are closed too.
      const reaper = clock.setInterval(() => web.closeIdle(), 100);
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (grace = clock.setTimeout(resolve, CLOSE_GRACE_MS)))]);
      clock.clearTimeout(grace);
      clock.clearInterval(reaper);
      web.closeAll();
      await Promise.allSettled([redis.quit(), subscriber.quit()]);
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

/**
 * Web Push's parts on this node, when the VAPID keys are set: what the routes use (subscriptions,
 * the endpoint check, ack credentials and their ack) and what the push worker uses.
 */
function wirePush(
  config: Config,
  deps: {
    redis: RedisClient;
    keys: Keys;
    clock: Clock;
    metrics: Metrics;
    nodeId: string;
    channel: (userId: string) => string;
    queue: Queue<PushJobData>;
    ca: string | undefined;
    /** The receipt spec of every script (src/queue/receipts.ts), and where they report outbox events. */
    spec: string;
    onOutbox: (userId: string, events: number) => void;
  },
): { routes: PushDeps; worker: NonNullable<Parameters<typeof startJobWorkers>[0]['push']> } | undefined {
  const { VAPID_PUBLIC_KEY: publicKey, VAPID_PRIVATE_KEY: privateKey, VAPID_SUBJECT: subject } = config;
  if (!config.PUSH_ENABLED || !publicKey || !privateKey || !subject) return undefined;
  const { redis, keys, clock, metrics, nodeId, channel, queue } = deps;
  const subscriptions = createPushSubscriptions({ redis, keys, clock, maxPerUser: config.PUSH_MAX_SUBSCRIPTIONS_PER_USER });
  const credentials = createPushCredentials(config.TOKEN_SECRET, clock, config.PUSH_ACK_TTL_SECONDS);
  const allowPrivate = config.PUSH_ALLOW_PRIVATE_ENDPOINTS;
  return {
    routes: {
      publicKey,
      subscriptions,
      checkEndpoint: (endpoint) => checkEndpoint(endpoint, allowPrivate),
      credentials,
      ack: createPushAck({
        redis,
        keys,
        clock,
        metrics,
        options: { nodeId, maxInflight: config.MAX_INFLIGHT, userChannel: channel, receiptSpec: deps.spec, onOutbox: deps.onOutbox },
      }),
    },
    worker: {
      queue,
      readDue: createPushDue({ redis, keys }),
      subscriptions,
      sender: createPushSender(
        { vapid: { publicKey, privateKey, subject }, allowPrivate, timeoutMs: config.PUSH_TIMEOUT_MS, ca: deps.ca },
        clock,
      ),
      ackCredential: credentials.issue,
      metrics: createPushMetrics(metrics.registry),
      options: { ackTimeoutMs: config.ACK_TIMEOUT_MS, ttlSeconds: config.PUSH_TTL_SECONDS, concurrency: config.PUSH_CONCURRENCY },
    },
  };
}
