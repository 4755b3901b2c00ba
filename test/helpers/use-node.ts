import type { Level } from 'pino';
import { afterAll, beforeAll, onTestFinished } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { captureLogs, type LogLine } from './log-capture.js';
import { startApp, type Overrides, type TestApp } from './start-app.js';
import { startRedis, type TestRedis } from './start-redis.js';

/*
 * The one fixture of the integration and browser tests. At the top of a file
 * (or of a describe block):
 *
 *   const node = useNode({ DRAIN_INTERVAL_MS: 50 });          // a node on its own redis-server
 *   const [one, two] = useNodes(2, { KEY_PREFIX: 'multi' });   // two nodes on one redis-server
 *   const other = useNode({ KEY_PREFIX: 'x' }, { redis: node.redis });
 *
 * then, in tests, `node.app.enqueue(...)`, `node.redis.client()`. Hooks start
 * everything in beforeAll, in the order the calls were made, and stop it in
 * afterAll, in reverse (vitest's sequence.hooks 'stack'). For a node that only
 * one test needs, startNodeForTest stops it when that test ends.
 */

const notYet = (what: string) =>
  new Error(`${what} starts in beforeAll: use it inside a test or a hook, not while the file is being collected`);

/**
 * A private redis-server for this file (or describe block), started in
 * beforeAll and stopped, with its clients, in afterAll. The handle can be
 * passed around before it starts; its members work once it has.
 */
export function useRedis(): TestRedis {
  let current: TestRedis | undefined;
  beforeAll(async () => {
    current = await startRedis();
  });
  afterAll(async () => {
    await current?.stop();
    current = undefined;
  });
  const started = (): TestRedis => {
    if (current === undefined) throw notYet('useRedis()');
    return current;
  };
  return {
    get port() {
      return started().port;
    },
    get url() {
      return started().url;
    },
    get dir() {
      return started().dir;
    },
    kill: (signal) => started().kill(signal),
    restart: () => started().restart(),
    client: () => started().client(),
    stop: () => started().stop(),
  };
}

export interface NodeOptions {
  /** The Redis to run on: a useRedis() handle or another node's `redis`. @defaultValue a redis-server of its own */
  redis?: TestRedis;
  /** Keep the node's log lines at this level (and above) in `logs`. @defaultValue none kept (TEST_LOG_LEVEL prints them) */
  logs?: Level;
  /** @defaultValue the system clock */
  clock?: Clock;
}

export interface TestNode {
  /** The running node; throws before beforeAll. */
  readonly app: TestApp;
  readonly redis: TestRedis;
  /** Its log lines when `logs` was given, oldest first; kept across restart(). */
  readonly logs: LogLine[];
  /**
   * Closes the node (unless the test already did, to act while it is down) and starts it
   * again on the same port with the same settings, as a deploy would. Returns the new app.
   */
  restart(): Promise<TestApp>;
}

/**
 * A postbox node for the tests of this file (or describe block), started in
 * beforeAll and closed in afterAll, streams opened through `app.openStream`
 * first. `overrides` may be a function, read when the node starts (e.g. paths
 * made in an earlier beforeAll).
 */
export function useNode(overrides: Overrides | (() => Overrides) = {}, options: NodeOptions = {}): TestNode {
  const redis = options.redis ?? useRedis();
  const logs: LogLine[] = [];
  let app: TestApp | undefined;
  const start = async (port?: number): Promise<TestApp> => {
    const settings = typeof overrides === 'function' ? overrides() : overrides;
    const logger = options.logs === undefined ? undefined : captureLogs(options.logs, logs).logger;
    app = await startApp(redis.url, port === undefined ? settings : { ...settings, PORT: port }, {
      ...(logger ? { logger } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    return app;
  };
  beforeAll(async () => {
    await start();
  });
  afterAll(async () => {
    await app?.close();
    app = undefined;
  });
  const running = (): TestApp => {
    if (app === undefined) throw notYet('useNode()');
    return app;
  };
  return {
    get app() {
      return running();
    },
    redis,
    logs,
    async restart() {
      const current = running();
      const port = Number(new URL(current.url).port);
      app = undefined;
      await current.close();
      // Same port (clients reconnect to it): if another socket took it meanwhile, wait until it
      // is released. Bounded: 40 tries, 250 ms apart.
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await start(port);
        } catch (err) {
          if (attempt >= 40 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    },
  };
}

/** `count` nodes with the same settings on one Redis, as behind a load balancer. */
export function useNodes(count: number, overrides: Overrides = {}, options: NodeOptions = {}): TestNode[] {
  const redis = options.redis ?? useRedis();
  return Array.from({ length: count }, () => useNode(overrides, { ...options, redis }));
}

export interface TestScopedNodeOptions extends Omit<NodeOptions, 'redis'> {
  /** With `logs`: the array the lines go to. @defaultValue a new one, out of reach */
  logLines?: LogLine[];
}

/**
 * A node that only the current test needs (its own KEY_PREFIX or settings),
 * closed when the test ends, passed or failed. Closing it earlier is fine.
 */
export async function startNodeForTest(
  redis: TestRedis,
  overrides: Overrides = {},
  options: TestScopedNodeOptions = {},
): Promise<TestApp> {
  const logger = options.logs === undefined ? undefined : captureLogs(options.logs, options.logLines).logger;
  const app = await startApp(redis.url, overrides, {
    ...(logger ? { logger } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  onTestFinished(() => app.close());
  return app;
}
