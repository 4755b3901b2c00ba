import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { retryAfterSeconds } from './errors.js';
import { createApp } from './http/app.js';
import { clientRoutes } from './http/client-routes.js';
import { createDemo } from './http/demo-routes.js';
import type { AppDeps } from './http/deps.js';
import { StreamHub } from './http/stream-hub.js';
import { createTokens } from './http/tokens.js';
import { createWebServer, readTlsFiles } from './http/web-server.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createMailbox, type Mailbox } from './queue/mailbox.js';
import { connectRedis, createCommandConnection, createSubscriberConnection } from './queue/redis.js';
import { createDrainWorker, type DrainWorker } from './workers/drain-worker.js';
import { createPeerDelivery } from './workers/peer-delivery.js';
import { createRateSampler } from './workers/rate-sampler.js';
import { startJobServices } from './workers/job-workers.js';
import { subscribeWakes } from './workers/wake-subscriber.js';

export interface Postbox {
  /** HTTP/1.1, or with TLS_CERT_FILE HTTPS serving HTTP/2 and HTTP/1.1. */
  readonly server: Server | Http2SecureServer;
  /** `http://host:port` (`https://` with TLS) once listening. */
  readonly url: string;
  readonly mailbox: Mailbox;
  readonly hub: StreamHub;
  readonly drain: DrainWorker;
  readonly metrics: Metrics;
  readonly redis: Redis;
  /** The BullMQ queues (scheduled, fanout, housekeeping), for the admin. */
  readonly queues: Queue[];
  listen(port: number, host: string): Promise<string>;
  /** Graceful: stop accepting, end the streams, finish requests, stop the workers, close Redis. */
  close(): Promise<void>;
}

/**
 * One postbox node: Redis connections, mailbox, drain worker, HTTP server.
 * Both `main.ts` and the tests build nodes here, so they run the same wiring.
 */
export async function createPostbox(
  config: Config,
  options: { redisUrl: string; logger: Logger; clock?: Clock; defaultMetrics?: boolean },
): Promise<Postbox> {
  const { logger, redisUrl } = options;
  // Before any connection is opened, so a bad path fails start-up with nothing to clean up.
  const tls = readTlsFiles(config);
  const clock = options.clock ?? systemClock;
  const redis = createCommandConnection(redisUrl);
  const subscriber = createSubscriberConnection(redisUrl);
  let lastRedisError = '';
  for (const [name, conn] of [
    ['redis', redis],
    ['subscriber', subscriber],
  ] as const) {
    conn.on('error', (err: Error) => {
      // ioredis repeats the same error on every reconnect attempt; log each kind once.
      if (err.message !== lastRedisError) logger.warn({ err, connection: name }, 'redis connection error');
      lastRedisError = err.message;
    });
    conn.on('ready', () => {
      if (lastRedisError !== '') logger.info({ connection: name }, 'redis connection ready again');
      lastRedisError = '';
    });
  }
  await Promise.all([connectRedis(redis), connectRedis(subscriber)]);

  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics ?? false });
  const mailbox = createMailbox({
    redis,
    clock,
    options: {
      keyPrefix: config.KEY_PREFIX,
      queueMaxLength: config.QUEUE_MAX_LENGTH,
      dedupWindowMs: config.DEDUP_WINDOW_MS,
      maxInflight: config.MAX_INFLIGHT,
      maxDeliveries: config.MAX_DELIVERIES,
      deadMaxLength: config.DEAD_MAX_LENGTH,
      retryAfterSeconds: retryAfterSeconds(config.ACK_TIMEOUT_MS),
    },
  });
  const hub = new StreamHub(clock, config.HEARTBEAT_MS);
  hub.onChange((_userId, event, reason) => {
    metrics.streamsOpen.set(hub.size);
    if (event === 'close') metrics.streamsClosed.inc({ reason });
  });
  // A user's streams on other nodes get what this node writes, and the reverse (src/workers/peer-delivery.ts).
  const peers = createPeerDelivery({
    subscriber,
    redis,
    hub,
    keys: mailbox.keys,
    nodeId: randomUUID(),
    clock,
    logger,
    metrics,
    wake: (userId) => drain.wake(userId),
  });
  const drain = createDrainWorker({
    mailbox,
    hub,
    clock,
    logger,
    metrics,
    options: {
      drainIntervalMs: config.DRAIN_INTERVAL_MS,
      ackTimeoutMs: config.ACK_TIMEOUT_MS,
      maxInflight: config.MAX_INFLIGHT,
    },
    hooks: peers,
  });
  await subscribeWakes(subscriber, mailbox.keys.wakeChannel(), (userId) => drain.wake(userId), logger);
  const rates = createRateSampler({
    metrics,
    redis,
    clock,
    logger,
    nodesKey: mailbox.keys.nodes(),
    load: () => ({ streams: hub.size, users: [...hub.users()].length }),
  });
  const jobs = await startJobServices({ config, redisUrl, redis, mailbox, metrics, logger, clock });

  let closing = false;
  const deps: AppDeps = {
    config,
    redis,
    mailbox,
    hub,
    drain,
    tokens: createTokens(config.TOKEN_SECRET, clock),
    metrics,
    schedules: jobs.schedules,
    rooms: jobs.rooms,
    fanout: jobs.queues.fanout,
    jobQueues: jobs.queues,
    rates,
    logger,
    clock,
    wake: (userId) => {
      redis.publish(mailbox.keys.wakeChannel(), userId).catch(() => undefined);
    },
    isClosing: () => closing,
  };
  // The demo's backend calls this node's public API at its listening address, as an application would.
  const demo = config.DEMO
    ? createDemo({ apiUrl: () => url, apiKey: config.API_KEY, logger, serverCert: tls?.cert })
    : undefined;
  const app = createApp(deps, [clientRoutes(), ...(demo ? [demo.router] : [])]);
  const web = createWebServer(app.callback(), tls);
  const { server } = web;
  let url = '';

  return {
    server,
    get url() {
      return url;
    },
    mailbox,
    hub,
    drain,
    metrics,
    redis,
    queues: jobs.queues.all,
    async listen(port, host) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      url = `${web.protocol}://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${address.port}`;
      return url;
    },
    async close() {
      if (closing) return;
      closing = true;
      demo?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Streams end cleanly; browsers reconnect (to another node) with Last-Event-ID.
      hub.closeAll('shutdown');
      web.closeIdle();
      await drain.close();
      await peers.close();
      await rates.close();
      await jobs.close();
      // Requests under way may finish; keep-alive sockets that fall idle meanwhile are closed too.
      const reaper = setInterval(() => web.closeIdle(), 100);
      await Promise.race([closed, new Promise((r) => setTimeout(r, 5000).unref())]);
      clearInterval(reaper);
      web.closeAll();
      await Promise.allSettled([redis.quit(), subscriber.quit()]);
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}
