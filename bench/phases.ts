import type { HttpClient } from './lib.js';
import { percentile, round, runPool, type PoolResult } from './lib.js';
import { BENCH_KEYS } from './server.js';
import type { AckPolicy } from './subscriber.js';

/** Every knob of a run; written to results.json with the figures. */
export interface BenchConfig {
  /** No phase starts new work after this long, ms. */
  phaseDeadlineMs: number;
  /** Length of the text in each message's `data`, characters. */
  payloadBytes: number;
  /** Single enqueues sent before measuring, so the JIT and the connections are warm. */
  warmup: number;
  single: { total: number; concurrency: number; users: number };
  batches: Array<{ size: number; total: number; concurrency: number; users: number }>;
  delivery: { streams: number; perUser: number; ack: AckPolicy };
  /**
   * One latency run per rate, in messages/s, each capped at `maxFraction` of
   * the measured single-enqueue rate so that the server is not saturated.
   */
  latency: { rates: number[]; maxFraction: number; durationMs: number };
  /** Time with the streams open and no traffic, to measure the background CPU, ms. */
  idleMs: number;
}

/** The figures of one phase. */
export interface PhaseResult {
  name: string;
  /** Messages enqueued (or delivered and acked) in the measured window. */
  messages: number;
  seconds: number;
  perSecond: number;
  failed: number;
  firstError?: string;
  /** The phase hit its deadline before its total. */
  cutShort: boolean;
  /** Round-trip time of one HTTP request, ms. */
  requestMs?: { p50: number; p99: number };
  /** Enqueue (request sent) to receipt on the SSE stream, ms; p99.9 from 5000 samples up. */
  latencyMs?: { samples: number; p50: number; p99: number; p999?: number; max: number };
  /** The server's own enqueue→write histogram over the phase (bucket upper bounds), ms. */
  serverEnqueueToWriteMs?: { p50: number; p99: number };
  notes: string[];
}

export interface PhaseContext {
  baseUrl: string;
  producer: HttpClient;
  config: BenchConfig;
  /** The server's /metrics. */
  scrape(): Promise<Map<string, number>>;
}

export const API_KEY = BENCH_KEYS.API_KEY;

export function payload(n: number, text: string): { n: number; text: string } {
  return { n, text };
}

function fromPool(name: string, pool: PoolResult, messagesPerTask: number, notes: string[]): PhaseResult {
  const seconds = pool.elapsedMs / 1000;
  const messages = pool.completed * messagesPerTask;
  return {
    name,
    messages,
    seconds: round(seconds),
    perSecond: round(messages / seconds),
    failed: pool.failed * messagesPerTask,
    ...(pool.firstError === undefined ? {} : { firstError: pool.firstError }),
    cutShort: pool.cutShort,
    requestMs: { p50: round(percentile(pool.latenciesMs, 50)), p99: round(percentile(pool.latenciesMs, 99)) },
    notes,
  };
}

export async function enqueueOne(producer: HttpClient, userId: string, data: unknown): Promise<void> {
  const res = await producer.request('POST', `/v1/users/${userId}/messages`, { data }, API_KEY);
  if (res.status !== 201) throw new Error(`enqueue → ${res.status}: ${res.body.slice(0, 200)}`);
}

export async function enqueueBatch(producer: HttpClient, messages: Array<{ userId: string; data: unknown }>): Promise<void> {
  const res = await producer.request('POST', '/v1/messages', { messages }, API_KEY);
  if (res.status !== 201) throw new Error(`batch → ${res.status}: ${res.body.slice(0, 200)}`);
  const body = JSON.parse(res.body) as { errors?: unknown[] };
  if (body.errors !== undefined) throw new Error(`batch: ${body.errors.length} messages refused`);
}

/** Warms the server's JIT and the keep-alive connections; not measured. */
export async function warmUp(ctx: PhaseContext): Promise<void> {
  const text = 'x'.repeat(ctx.config.payloadBytes);
  const pool = await runPool(
    { concurrency: ctx.config.single.concurrency, total: ctx.config.warmup, deadlineMs: ctx.config.phaseDeadlineMs },
    (i) => enqueueOne(ctx.producer, `warm-${i % 100}`, payload(i, text)),
  );
  if (pool.failed > 0) throw new Error(`warm-up failed: ${pool.firstError}`);
}

/** `POST /v1/users/:userId/messages`, closed loop, `concurrency` requests in flight. */
export async function singleEnqueue(ctx: PhaseContext): Promise<PhaseResult> {
  const { total, concurrency, users } = ctx.config.single;
  const text = 'x'.repeat(ctx.config.payloadBytes);
  const pool = await runPool({ concurrency, total, deadlineMs: ctx.config.phaseDeadlineMs }, (i) =>
    enqueueOne(ctx.producer, `single-${i % users}`, payload(i, text)),
  );
  return fromPool('single enqueue', pool, 1, [`${concurrency} requests in flight, ${users} users`]);
}

/** `POST /v1/messages` with `size` messages per request, spread over `users` users. */
export async function batchEnqueue(
  ctx: PhaseContext,
  spec: BenchConfig['batches'][number],
): Promise<PhaseResult> {
  const text = 'x'.repeat(ctx.config.payloadBytes);
  const tasks = Math.ceil(spec.total / spec.size);
  const pool = await runPool({ concurrency: spec.concurrency, total: tasks, deadlineMs: ctx.config.phaseDeadlineMs }, (b) =>
    enqueueBatch(
      ctx.producer,
      Array.from({ length: spec.size }, (_, j) => {
        const n = b * spec.size + j;
        return { userId: `batch${spec.size}-${n % spec.users}`, data: payload(n, text) };
      }),
    ),
  );
  return fromPool(`batch enqueue (${spec.size}/request)`, pool, spec.size, [
    `${spec.concurrency} requests in flight, ${spec.users} users`,
  ]);
}
