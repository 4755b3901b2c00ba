import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort, startRedis, type TestRedis } from '../../test/helpers/start-redis.js';
import { BENCH_KEYS, startServer } from '../server.js';
import { startNchan } from './nchan.js';
import type { TargetSpec } from './protocol.js';

/* The four targets of `npm run bench:peers`, each one server process plus, where it has one, its own Redis. */

export const TARGETS = ['postbox', 'nchan-memory', 'nchan-redis', 'naive'] as const;
export type TargetName = (typeof TARGETS)[number];

export interface RunningTarget {
  readonly name: TargetName;
  readonly spec: TargetSpec;
  /** Processes of the server (nginx: master and worker). */
  serverPids(): number[];
  /** The target's own redis-server, if it has one. */
  readonly redisPid: number | undefined;
  /** Commands its Redis has run (sum of INFO commandstats calls); undefined without a Redis. */
  redisCommands(): Promise<number | undefined>;
  /** Lines the server logged (postbox logs at warn and above only here); null where not read. */
  logLines(): number | null;
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** Node flags for postbox, e.g. `--cpu-prof`. @defaultValue [] */
  serverArgs?: string[];
  /** Path of ngx_nchan_module.so; Nchan targets need it. */
  nchanModule?: string;
  /** Drain interval of the naive baseline, ms. @defaultValue 50 */
  naiveIntervalMs?: number;
}

const root = fileURLToPath(new URL('../..', import.meta.url));

async function redisPidOf(redis: TestRedis): Promise<number> {
  const client = redis.client();
  const info = await client.info('server');
  client.disconnect();
  return Number(/^process_id:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** A reader of the Redis's command count over one connection, kept until the Redis stops. */
function commandCounter(redis: TestRedis): () => Promise<number> {
  const client = redis.client();
  return async () => {
    const info = await client.info('commandstats');
    let calls = 0;
    for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) calls += Number(m[1]);
    return calls;
  };
}

async function stopRedis(redis: TestRedis): Promise<void> {
  // SIGTERM lets it finish its append-only file; stop() then removes the temp dir.
  await redis.kill('SIGTERM');
  await redis.stop();
}

async function startNaive(intervalMs: number): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/baselines/naive-sse.ts', '--port', String(port), '--interval-ms', String(intervalMs)],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the naive server did not start in 30 s')), 30_000);
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`the naive server exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts `name` fresh: its own Redis (postbox, nchan-redis), then the server. */
export async function startTarget(name: TargetName, options: TargetOptions = {}): Promise<RunningTarget> {
  const postboxSpec = (baseUrl: string, acks: boolean): TargetSpec => ({
    dialect: 'postbox',
    baseUrl,
    apiKey: BENCH_KEYS.API_KEY,
    acks,
  });
  switch (name) {
    case 'postbox': {
      const redis = await startRedis();
      try {
        const redisPid = await redisPidOf(redis);
        const server = await startServer(redis.url, { nodeArgs: options.serverArgs ?? [] });
        const redisCommands = commandCounter(redis);
        return {
          name,
          spec: postboxSpec(server.url, true),
          serverPids: () => [server.pid],
          redisPid,
          redisCommands,
          logLines: () => server.warnings(),
          async stop() {
            await server.stop();
            await stopRedis(redis);
          },
        };
      } catch (err) {
        await stopRedis(redis);
        throw err;
      }
    }
    case 'nchan-memory':
    case 'nchan-redis': {
      const module = options.nchanModule;
      if (module === undefined) throw new Error('Nchan is not installed');
      const redis = name === 'nchan-redis' ? await startRedis() : undefined;
      try {
        const redisPid = redis === undefined ? undefined : await redisPidOf(redis);
        const server = await startNchan({ module, ...(redis === undefined ? {} : { redisUrl: redis.url }) });
        const count = redis === undefined ? undefined : commandCounter(redis);
        return {
          name,
          spec: { dialect: 'nchan', baseUrl: server.url, apiKey: '', acks: false },
          serverPids: () => server.pids(),
          redisPid,
          redisCommands: async () => (count === undefined ? undefined : count()),
          logLines: () => null,
          async stop() {
            await server.stop();
            if (redis !== undefined) await stopRedis(redis);
          },
        };
      } catch (err) {
        if (redis !== undefined) await stopRedis(redis);
        throw err;
      }
    }
    case 'naive': {
      const server = await startNaive(options.naiveIntervalMs ?? 50);
      // It accepts acks and ignores them: the generator acks as it does for postbox.
      return {
        name,
        spec: postboxSpec(server.url, true),
        serverPids: () => [server.pid],
        redisPid: undefined,
        redisCommands: async () => undefined,
        logLines: () => null,
        stop: () => server.stop(),
      };
    }
  }
}
