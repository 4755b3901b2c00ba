import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selfSignedCert } from '../../test/helpers/h2-client.js';
import { freePort, startRedis, type TestRedis } from '../../test/helpers/start-redis.js';
import { BENCH_KEYS, startServer, type BenchServer } from '../server.js';
import { startNchan } from './nchan.js';
import type { TargetSpec } from './protocol.js';

/*
 * The four targets of `npm run bench:peers`, each one server process plus, where it has one, its
 * own Redis; and, for `npm run bench:scale`, postbox and Nchan over HTTP/2 (TLS, many streams to
 * a connection), whose generators hold streams only (no acks, no publishing).
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
  /** Processes of the server (nginx: master and worker). */
  serverPids(): number[];
  /** The target's own redis-server, if it has one. */
  readonly redisPid: number | undefined;
  /** Commands its Redis has run (sum of INFO commandstats calls); undefined without a Redis. */
  redisCommands(): Promise<number | undefined>;
  /** Lines the server logged at warn and above (postbox's output at LOG_LEVEL=warn, nginx's error log); null where not read. */
  logLines(): number | null;
  /** postbox's own figures (/metrics); undefined for other targets. */
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
    case 'postbox':
    case 'postbox-h2': {
      const certDir = name === 'postbox-h2' ? mkdtempSync(join(tmpdir(), 'postbox-peers-tls-')) : undefined;
      const cert = certDir === undefined ? undefined : selfSignedCert(certDir);
      const redis = await startRedis();
      try {
        const redisPid = await redisPidOf(redis);
        const tlsEnv: Record<string, string> = cert === undefined ? {} : { TLS_CERT_FILE: cert.TLS_CERT_FILE, TLS_KEY_FILE: cert.TLS_KEY_FILE };
        const server = await startServer(redis.url, {
          nodeArgs: options.serverArgs ?? [],
          env: postboxEnv({ ...tlsEnv, ...options.serverEnv }),
          ...(cert === undefined ? {} : { ca: cert.ca }),
        });
        const redisCommands = commandCounter(redis);
        return {
          name,
          spec: {
            ...postboxSpec(server.url, cert === undefined),
            tokenSecret: BENCH_KEYS.TOKEN_SECRET,
            ...(cert === undefined ? {} : { http2: { ca: cert.ca, streamsPerConnection: H2_STREAMS_PER_CONNECTION } }),
          },
          serverPids: () => [server.pid],
          redisPid,
          redisCommands,
          logLines: () => server.warnings(),
          inside: () => insideOf(server),
          async stop() {
            await server.stop();
            await stopRedis(redis);
            if (certDir !== undefined) rmSync(certDir, { recursive: true, force: true });
          },
        };
      } catch (err) {
        await stopRedis(redis);
        if (certDir !== undefined) rmSync(certDir, { recursive: true, force: true });
        throw err;
      }
    }
    case 'nchan-memory':
    case 'nchan-memory-h2':
    case 'nchan-redis': {
      const module = options.nchanModule;
      if (module === undefined) throw new Error('Nchan is not installed');
      const certDir = name === 'nchan-memory-h2' ? mkdtempSync(join(tmpdir(), 'postbox-peers-tls-')) : undefined;
      const cert = certDir === undefined ? undefined : selfSignedCert(certDir);
      const redis = name === 'nchan-redis' ? await startRedis() : undefined;
      try {
        const redisPid = redis === undefined ? undefined : await redisPidOf(redis);
        const server = await startNchan({
          module,
          ...(redis === undefined ? {} : { redisUrl: redis.url }),
          ...(cert === undefined ? {} : { tls: { certFile: cert.TLS_CERT_FILE, keyFile: cert.TLS_KEY_FILE, ca: cert.ca } }),
          ...(options.nchanPingSeconds === undefined ? {} : { pingSeconds: options.nchanPingSeconds }),
        });
        const count = redis === undefined ? undefined : commandCounter(redis);
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
          redisPid,
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
        redisPid: undefined,
        redisCommands: async () => undefined,
        logLines: () => null,
        inside: async () => undefined,
        stop: () => server.stop(),
      };
    }
  }
}
