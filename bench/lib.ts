import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

/** A response read to its end. */
export interface HttpResult {
  status: number;
  body: string;
}

/**
 * A keep-alive agent for a load generator. Idle sockets are dropped after 4 s, before a
 * server's 5 s keep-alive timeout closes them: otherwise a request can race the server's FIN
 * and fail with ECONNRESET. Requests beyond `maxSockets` wait in the agent's queue.
 */
export function keepAliveAgent(maxSockets: number, tls?: { ca?: string }): http.Agent {
  const options = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: 4_000 };
  if (tls === undefined) return new http.Agent(options);
  return new https.Agent({ ...options, ...(tls.ca === undefined ? {} : { ca: tls.ca }) });
}

/** One request (`options` names the agent), read to its end; it fails when idle for `timeoutMs`. */
export function send(
  options: http.RequestOptions & { method: string; path: string },
  body: string | undefined,
  timeoutMs: number,
): Promise<HttpResult> {
  const { method, path } = options;
  return new Promise((resolve, reject) => {
    const transport = options.agent instanceof https.Agent ? https : http;
    const req = transport.request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.end(body);
  });
}

/**
 * A keep-alive HTTP/1.1 client over `http.request`. In our measurements it
 * costs the load generator less CPU per request than the global fetch, which
 * matters when the generator shares two cores with the server and Redis.
 */
export class HttpClient {
  private readonly agent: http.Agent;
  private readonly host: string;
  private readonly port: number;

  /**
   * @param baseUrl - `http://host:port` of the server.
   * @param maxSockets - connections kept open; requests beyond it wait in the agent's queue.
   * @param timeoutMs - a request idle this long fails. @defaultValue 30000
   * @param ca - the PEM certificate to trust for an https:// `baseUrl` (HTTP/1.1 over TLS). @defaultValue none
   */
  constructor(
    baseUrl: string,
    maxSockets: number,
    private readonly timeoutMs = 30_000,
    ca?: string,
  ) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = keepAliveAgent(maxSockets, url.protocol === 'https:' ? { ca } : undefined);
  }

  request(method: string, path: string, body?: unknown, bearer?: string): Promise<HttpResult> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: http.OutgoingHttpHeaders = {};
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    return send({ host: this.host, port: this.port, method, path, headers, agent: this.agent }, payload, this.timeoutMs);
  }

  /** POSTs JSON and returns the parsed answer; throws unless the status is `expected`. */
  async postJson<T>(path: string, body: unknown, bearer: string, expected: number[] = [200, 201]): Promise<T> {
    const res = await this.request('POST', path, body, bearer);
    if (!expected.includes(res.status)) throw new Error(`POST ${path} → ${res.status}: ${res.body.slice(0, 300)}`);
    return JSON.parse(res.body) as T;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Outcome of `runPool`. */
export interface PoolResult {
  /** Tasks that resolved. */
  completed: number;
  /** Tasks that threw. */
  failed: number;
  /** The first error seen, for the report. */
  firstError: string | undefined;
  /** From the first task started to the last one settled, ms. */
  elapsedMs: number;
  /** Duration of each completed task, ms. */
  latenciesMs: number[];
  /** True when the deadline stopped the pool before `total`. */
  cutShort: boolean;
}

/**
 * Runs `task(0..total-1)` with `concurrency` workers in a closed loop. No
 * task starts after `deadlineMs`, so every phase is bounded in time.
 */
export async function runPool(
  options: { concurrency: number; total: number; deadlineMs: number },
  task: (index: number) => Promise<void>,
): Promise<PoolResult> {
  const { concurrency, total, deadlineMs } = options;
  const latenciesMs: number[] = [];
  let next = 0;
  let completed = 0;
  let failed = 0;
  let firstError: string | undefined;
  let cutShort = false;
  const start = performance.now();
  const worker = async () => {
    while (next < total) {
      if (performance.now() - start > deadlineMs) {
        cutShort = true;
        return;
      }
      const index = next++;
      const t0 = performance.now();
      try {
        await task(index);
        latenciesMs.push(performance.now() - t0);
        completed += 1;
      } catch (err) {
        failed += 1;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { completed, failed, firstError, elapsedMs: performance.now() - start, latenciesMs, cutShort };
}

/** Nearest-rank percentile of `values` (`p` in 0..100); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

/** Milliseconds on a wall clock with sub-millisecond resolution; producer and receiver share it. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Parses Prometheus text into `name{labels}` → value. Enough for the few
 * process gauges and counters the bench reads.
 */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) values.set(match[1], Number(match[2]));
  }
  return values;
}

/**
 * The `q` quantile (0..1) of the observations a Prometheus histogram gained
 * between two scrapes, as the upper bound of the bucket it falls in (seconds).
 */
export function histogramQuantile(
  before: Map<string, number>,
  after: Map<string, number>,
  name: string,
  q: number,
): number {
  const prefix = `${name}_bucket{le="`;
  const buckets: Array<{ le: number; count: number }> = [];
  for (const [key, value] of after) {
    if (!key.startsWith(prefix)) continue;
    const le = key.slice(prefix.length, key.indexOf('"', prefix.length));
    buckets.push({ le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), count: value - (before.get(key) ?? 0) });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return Number.NaN;
  return buckets.find((b) => b.count >= q * total)?.le ?? Number.NaN;
}

/** Rounds for the report: 3 significant digits below 100, whole numbers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  return Math.abs(value) >= 100 ? Math.round(value) : Number(value.toPrecision(3));
}

/** The first group of `pattern` in what `cmd args` prints (e.g. a version), or 'unknown'. */
export function versionOf(cmd: string, args: string[], pattern: RegExp): string {
  try {
    return pattern.exec(execFileSync(cmd, args, { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The machine a report was measured on, with the load averages before the run (`os.loadavg()` then) and now. */
export function machineInfo(loadBefore: readonly number[]) {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageBefore: loadBefore.map(round),
    loadAverageAfter: os.loadavg().map(round),
  };
}

/** Runs a bench's `main`: what it returns is the exit code; a throw is printed, stack and all, under `name`, and exits 1. */
export function runMain(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode ||= code;
    },
    (err: unknown) => {
      console.error(`${name} failed: ${err instanceof Error ? err.stack : String(err)}`);
      process.exitCode = 1;
    },
  );
}
