import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { selfSignedCert } from '../../test/helpers/h2-client.js';
import { startCluster } from '../../test/helpers/start-cluster.js';
import { freePort, startRedis, type TestRedis } from '../../test/helpers/start-redis.js';
import { BENCH_KEYS, startServer, type BenchServer } from '../server.js';
import { startNchan } from './nchan.js';
import type { TargetSpec } from './protocol.js';

/*
 * The four targets of `npm run bench:peers`, each one server process plus,
 * where it has one, its own Redis; postbox on several nodes, on one Redis or
 * on a Redis Cluster (`npm run bench:nodes`); and, for `npm run bench:scale`,
 * postbox and Nchan over HTTP/2 (TLS, many streams to a connection), whose
 * generators hold streams only (no acks, no publishing).
 */

export const TARGETS = ['postbox', 'nchan-memory', 'nchan-redis', 'naive'] as const;
export const SCALE_TARGETS = ['postbox', 'postbox-h2', 'nchan-memory', 'nchan-memory-h2', 'nchan-redis'] as const;
export type TargetName = (typeof TARGETS)[number] | (typeof SCALE_TARGETS)[number];

/** Streams an HTTP/2 generator puts on one connection (a browser puts every tab of an origin on one). */
const H2_STREAMS_PER_CONNECTION = 100;

/** What postbox says of itself on /metrics. */
export interface ServerInside {
  streamsOpen: number;
  heapUsedBytes: number;
  /** Memory of Buffers and other objects outside the V8 heap (nodejs_external_memory_bytes). */
  externalBytes: number;
}

export interface RunningTarget {
  readonly name: TargetName;
  readonly spec: TargetSpec;
  /** Processes of the server (nginx: master and worker; postbox: every node). */
  serverPids(): number[];
  /** The target's own redis-server processes (a cluster's masters); empty without a Redis. */
  readonly redisPids: readonly number[];
  /** INFO commandstats of its Redis, summed over its processes; undefined without a Redis. */
  redisCommands(): Promise<CommandStats | undefined>;
  /** Lines the server logged (postbox logs at warn and above only here); null where not read. */
  logLines(): number | null;
  /** postbox's own figures (/metrics, its first node); undefined for other targets. */
  inside(): Promise<ServerInside | undefined>;
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** Node flags for postbox, e.g. `--cpu-prof`. @defaultValue [] */
  serverArgs?: string[];
  /** Path of ngx_nchan_module.so; Nchan targets need it. */
  nchanModule?: string;
  /** Drain interval of the naive baseline, ms. @defaultValue 50 */
  naiveIntervalMs?: number;
  /** Added to postbox's environment (over the bench's own: STREAM_OPENS_PER_ADDRESS=0). @defaultValue {} */
  serverEnv?: Record<string, string>;
  /** Nchan pings its subscribers this often, s. @defaultValue 0, never (Nchan's default) */
  nchanPingSeconds?: number;
}

/**
 * Every generator stands for thousands of browsers behind one address, so the per-address open
 * limit (a reload loop's brake) is off; every other setting is postbox's default unless `extra` says.
 */
function postboxEnv(extra: Record<string, string> | undefined): Record<string, string> {
  return { STREAM_OPENS_PER_ADDRESS: '0', ...extra };
}

async function insideOf(server: BenchServer): Promise<ServerInside> {
  const m = await server.metrics();
  return {
    streamsOpen: m.get('postbox_streams_open') ?? 0,
    heapUsedBytes: m.get('postbox_nodejs_heap_size_used_bytes') ?? 0,
    externalBytes: m.get('postbox_nodejs_external_memory_bytes') ?? 0,
  };
}

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Per command (lower case): calls so far and the µs spent in them (commands run by scripts included). */
export type CommandStats = Map<string, { calls: number; usec: number }>;

async function redisPidOf(redis: TestRedis): Promise<number> {
  const client = redis.client();
  const info = await client.info('server');
  client.disconnect();
  return Number(/^process_id:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** A reader of INFO commandstats over one connection per Redis process, summed; the connections live as long as the Redis. */
function commandCounter(clients: readonly Redis[]): () => Promise<CommandStats> {
  return async () => {
    const stats: CommandStats = new Map();
    for (const info of await Promise.all(clients.map((c) => c.info('commandstats')))) {
      for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
        const name = m[1] ?? '';
        const s = stats.get(name) ?? { calls: 0, usec: 0 };
        stats.set(name, { calls: s.calls + Number(m[2]), usec: s.usec + Number(m[3]) });
      }
    }
    return stats;
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
  switch (name) {
    case 'postbox':
      return startPostbox({ serverArgs: options.serverArgs ?? [], env: options.serverEnv ?? {} });
    case 'postbox-h2':
      return startPostbox({ serverArgs: options.serverArgs ?? [], env: options.serverEnv ?? {}, tls: true });
    case 'nchan-memory':
    case 'nchan-memory-h2':
    case 'nchan-redis': {
      const module = options.nchanModule;
      if (module === undefined) throw new Error('Nchan is not installed');
      const certDir = name === 'nchan-memory-h2' ? mkdtempSync(join(tmpdir(), 'postbox-peers-tls-')) : undefined;
      const cert = certDir === undefined ? undefined : selfSignedCert(certDir);
      const redis = name === 'nchan-redis' ? await startRedis() : undefined;
      try {
        const redisPids = redis === undefined ? [] : [await redisPidOf(redis)];
        const server = await startNchan({
          module,
          ...(redis === undefined ? {} : { redisUrl: redis.url }),
          ...(cert === undefined ? {} : { tls: { certFile: cert.TLS_CERT_FILE, keyFile: cert.TLS_KEY_FILE, ca: cert.ca } }),
          ...(options.nchanPingSeconds === undefined ? {} : { pingSeconds: options.nchanPingSeconds }),
        });
        const count = redis === undefined ? undefined : commandCounter([redis.client()]);
        return {
          name,
          spec: {
            dialect: 'nchan',
            baseUrl: server.url,
            apiKey: '',
            acks: false,
            ...(cert === undefined ? {} : { http2: { ca: cert.ca, streamsPerConnection: H2_STREAMS_PER_CONNECTION } }),
          },
          serverPids: () => server.pids(),
          redisPids,
          redisCommands: async () => (count === undefined ? undefined : count()),
          logLines: () => server.logLines(),
          inside: async () => undefined,
          async stop() {
            await server.stop();
            if (redis !== undefined) await stopRedis(redis);
            if (certDir !== undefined) rmSync(certDir, { recursive: true, force: true });
          },
        };
      } catch (err) {
        if (redis !== undefined) await stopRedis(redis);
        if (certDir !== undefined) rmSync(certDir, { recursive: true, force: true });
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
        redisPids: [],
        redisCommands: async () => undefined,
        logLines: () => null,
        inside: async () => undefined,
        stop: () => server.stop(),
      };
    }
  }
}

/**
 * The Redis of a postbox target: one redis-server, or a Redis Cluster. A
 * benchmark may keep one for several targets, emptied between them.
 */
export interface RedisBackend {
  /** REDIS_URL of the nodes (well-formed but unused on a cluster). */
  readonly url: string;
  /** More of the nodes' environment: REDIS_CLUSTER_NODES on a cluster. */
  readonly env: Record<string, string>;
  /** Every redis-server process: the masters of a cluster. */
  readonly pids: readonly number[];
  /** INFO commandstats, summed over the processes. */
  commands(): Promise<CommandStats>;
  /** FLUSHALL on every process: the next target finds it empty. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** A fresh redis-server, or a Redis Cluster of `clusterMasters` masters, on loopback. */
export async function startRedisBackend(clusterMasters?: number): Promise<RedisBackend> {
  if (clusterMasters === undefined) {
    const redis = await startRedis();
    const client = redis.client();
    return {
      url: redis.url,
      env: {},
      pids: [await redisPidOf(redis)],
      commands: commandCounter([client]),
      flush: async () => void (await client.flushall()),
      stop: () => stopRedis(redis),
    };
  }
  const cluster = await startCluster({ masters: clusterMasters });
  // One plain connection per master: INFO and FLUSHALL speak for one process only.
  const clients = cluster.nodes.map((n) => new Redis(n.port, n.host, { maxRetriesPerRequest: 1 }));
  return {
    url: `redis://${cluster.nodes[0]?.host}:${cluster.nodes[0]?.port}`,
    env: { REDIS_CLUSTER_NODES: cluster.seeds },
    pids: cluster.nodes.map((n) => n.pid ?? 0),
    commands: commandCounter(clients),
    flush: async () => void (await Promise.all(clients.map((c) => c.flushall()))),
    async stop() {
      for (const c of clients) c.disconnect();
      await cluster.stop();
    },
  };
}

/** postbox on several nodes: which Redis, how many nodes. */
export interface PostboxTopology {
  /** postbox processes, all against the same Redis. @defaultValue 1 */
  nodes?: number;
  /**
   * The Redis to use, left running by `stop()` and emptied (FLUSHALL) once the nodes are gone.
   * @defaultValue a fresh redis-server, stopped with the nodes
   */
  backend?: RedisBackend;
  /** Node flags of every postbox process, e.g. `--cpu-prof`. @defaultValue [] */
  serverArgs?: string[];
  /** More of every node's environment (over postboxEnv's). @defaultValue {} */
  env?: Record<string, string>;
  /**
   * HTTPS with HTTP/2, with a self-signed certificate: streams share connections, many to one, and
   * the generator signs tokens itself and acks nothing (bench:scale holds streams only).
   * @defaultValue false
   */
  tls?: boolean;
}

function postboxSpec(baseUrl: string, acks: boolean, nodes?: string[]): TargetSpec {
  return { dialect: 'postbox', baseUrl, apiKey: BENCH_KEYS.API_KEY, acks, ...(nodes === undefined ? {} : { nodes }) };
}

/** `nodes` postbox processes against one Redis (or cluster), started side by side. */
export async function startPostbox(topology: PostboxTopology = {}): Promise<RunningTarget> {
  const count = topology.nodes ?? 1;
  const backend = topology.backend ?? (await startRedisBackend());
  const certDir = topology.tls ? mkdtempSync(join(tmpdir(), 'postbox-peers-tls-')) : undefined;
  const cert = certDir === undefined ? undefined : selfSignedCert(certDir);
  const tlsEnv: Record<string, string> = cert === undefined ? {} : { TLS_CERT_FILE: cert.TLS_CERT_FILE, TLS_KEY_FILE: cert.TLS_KEY_FILE };
  const servers: BenchServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await (topology.backend === undefined ? backend.stop() : backend.flush());
    if (certDir !== undefined) rmSync(certDir, { recursive: true, force: true });
  };
  try {
    const env = postboxEnv({ ...backend.env, ...tlsEnv, ...topology.env });
    const started = await Promise.allSettled(
      Array.from({ length: count }, () =>
        startServer(backend.url, { nodeArgs: topology.serverArgs ?? [], env, ...(cert === undefined ? {} : { ca: cert.ca }) }).then((s) =>
          servers.push(s),
        ),
      ),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } catch (err) {
    await stop();
    throw err;
  }
  const urls = servers.map((s) => s.url);
  const first = servers[0];
  return {
    name: cert === undefined ? 'postbox' : 'postbox-h2',
    spec: {
      ...postboxSpec(urls[0] ?? '', cert === undefined, count > 1 ? urls : undefined),
      tokenSecret: BENCH_KEYS.TOKEN_SECRET,
      ...(cert === undefined ? {} : { http2: { ca: cert.ca, streamsPerConnection: H2_STREAMS_PER_CONNECTION } }),
    },
    serverPids: () => servers.map((s) => s.pid),
    redisPids: backend.pids,
    redisCommands: () => backend.commands(),
    logLines: () => servers.reduce((n, s) => n + s.warnings(), 0),
    inside: async () => (first === undefined ? undefined : insideOf(first)),
    stop,
  };
}
