import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/start-redis.js';
import { HttpClient, parseMetrics, sleep } from './lib.js';

/** Fixed credentials of the benchmarked server; it only listens on 127.0.0.1. */
export const BENCH_KEYS = {
  API_KEY: 'bench-api-key-0123456789abcdef',
  ADMIN_KEY: 'bench-admin-key-0123456789abcdef',
  TOKEN_SECRET: 'bench-token-secret-0123456789abcdef-0123456789',
} as const;

/** A postbox server in its own process, so the load generator does not share its event loop. */
export interface BenchServer {
  readonly url: string;
  readonly pid: number;
  /** Lines the server logged at warn or above (LOG_LEVEL=warn, so every line). */
  readonly warnings: () => number;
  /** The last 16 KiB the server wrote, to explain a failure. */
  readonly logTail: () => string;
  /** The server's /metrics as `name{labels}` → value. */
  metrics(): Promise<Map<string, number>>;
  /** SIGTERM and wait for a clean exit (SIGKILL after `timeoutMs`); resolves to the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Starts `node --import tsx src/main.ts` against `redisUrl` in production mode
 * and waits until /readyz answers 200 (at most `readyTimeoutMs`).
 */
export async function startServer(
  redisUrl: string,
  options: {
    /** Added to (and overriding) the server's environment. */
    env?: Record<string, string>;
    /** Extra node flags, e.g. `--cpu-prof` to profile the server. @defaultValue [] */
    nodeArgs?: string[];
    /** @defaultValue 30000 */
    readyTimeoutMs?: number;
    /** The certificate to trust when `env` sets TLS_CERT_FILE and TLS_KEY_FILE: the server speaks HTTPS. */
    ca?: string;
  } = {},
): Promise<BenchServer> {
  const port = await freePort();
  const url = `${options.ca === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_URL: redisUrl,
      ...BENCH_KEYS,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let warnings = 0;
  const keep = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    warnings += text.split('\n').filter((line) => line.trim() !== '').length;
    // Keep the tail only: enough to explain a failure.
    output = (output + text).slice(-16_384);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });

  const http = new HttpClient(url, 2, 5_000, options.ca);
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  try {
    for (;;) {
      if (hasExited) throw new Error(`the server exited before it was ready:\n${output}`);
      if (Date.now() > deadline) throw new Error(`the server was not ready in time:\n${output}`);
      const res = await http.request('GET', '/readyz').catch(() => undefined);
      if (res?.status === 200) break;
      await sleep(100);
    }
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    http.close();
    throw err;
  }

  return {
    url,
    pid: child.pid ?? 0,
    warnings: () => warnings,
    logTail: () => output,
    async metrics() {
      const res = await http.request('GET', '/metrics');
      if (res.status !== 200) throw new Error(`GET /metrics → ${res.status}`);
      return parseMetrics(res.body);
    },
    async stop(timeoutMs = 15_000) {
      http.close();
      if (hasExited) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      if (code !== 0) process.stderr.write(`server exited with ${code}:\n${output}\n`);
      return code;
    },
  };
}
