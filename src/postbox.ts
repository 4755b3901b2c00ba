import type { Server } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { createDelivery, type Delivery } from './delivery/delivery.js';
import type { StreamHub } from './delivery/stream-hub.js';
import { userChannel } from './delivery/wake.js';
import { retryAfterSeconds } from './errors.js';
import { createApp } from './http/app.js';
import { createClientBuild } from './http/client-build.js';
import { clientRoutes } from './http/client-routes.js';
import { createDemo } from './http/demo-routes.js';
import { createTokens } from './http/tokens.js';
import { createWebServer, readTlsFiles } from './http/web-server.js';
import { createMetrics } from './metrics/metrics.js';
import { createRateSampler } from './metrics/rate-sampler.js';
import { createNodeId } from './node-id.js';
import { createAdminQueries } from './queue/admin/admin-queries.js';
import { createJobQueues } from './queue/job-queues.js';
import { createMailbox } from './queue/mailbox.js';
import { connectRedis, createConnection, parseClusterNodes, type RedisConnectionSettings } from './queue/redis.js';
import { checkRedis, redactRedisUrl } from './queue/redis-checks.js';
import { createRooms } from './queue/rooms.js';
import { createSchedules } from './queue/schedules.js';
import { createThrottledLog } from './throttled-log.js';
import { startJobWorkers } from './workers/job-services.js';

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
  /** The BullMQ queues (scheduled, fanout, housekeeping). */
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
  config: Config,
  options: {
    /** One Redis (ignored when REDIS_CLUSTER_NODES is set). */
    redisUrl: string;
    logger: Logger;
    clock?: Clock;
    defaultMetrics?: boolean;
    /**
     * How the start-up check names this Redis, and why it was chosen when nobody configured it
     * (see checkRedis). @defaultValue the URL without its password, or the cluster seeds; no fallback
     */
    redisReport?: { target?: string; fallback?: string };
  },
): Promise<Postbox> {
  const { logger } = options;
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
    load: () => ({ streams: hub.size, users: [...hub.users()].length }),
  });
  const keys = mailbox.keys;
  const queues = await createJobQueues({ redis: settings, keyPrefix: config.KEY_PREFIX, logger, clock });
  const rooms = createRooms({ redis, keys, fanout: queues.fanout, clock });
  const schedules = createSchedules({ queues, redis, keys, clock });
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
      },
    });
  } catch (err) {
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
      admin,
      jobQueues: queues.all,
      rates,
      logger,
      clock,
      isClosing: () => closing,
    },
    [() => clientRoutes({ build: client }), ...(demo ? [() => demo.router] : [])],
  );
  const web = createWebServer(app.callback(), tls);
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
        server.listen(port, host, () => {
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
