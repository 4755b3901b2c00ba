import { round, sleep } from '../lib.js';
import type { GeneratorPool } from './generator-pool.js';
import { figures, snapshot } from './measure.js';
import type { OpenResult, PacedOpenResult } from './protocol.js';
import type { RunningTarget, ServerInside } from './targets.js';

/*
 * What an open, quiet stream costs: STREAMS streams opened on a fresh
 * target (tokens made first, so their cost is not counted), each its own user
 * with its own token, at OPEN_RATE per second spread over the generators;
 * the resident memory they add, then CPU over a quiet window (heartbeats,
 * drain ticks, housekeeping: whatever the server does for streams that
 * receive nothing). bench:peers runs it at 10,000 streams, bench:scale at 50,000.
 */

export interface IdleConfig {
  streams: number;
  /** Quiet time after opening, before the window, ms. */
  settleMs: number;
  windowMs: number;
  /** Opens per second offered, all generators together; 0: as fast as `openInflight` allows. @defaultValue 0 */
  openRate?: number;
  /** Opens unanswered at once per generator; past it the schedule waits. @defaultValue 32 */
  openInflight?: number;
  /** An open unanswered this long fails, ms. @defaultValue 30000 */
  openTimeoutMs?: number;
}

export interface IdleResult {
  target: string;
  /** Streams open at the end of the window. */
  streams: number;
  /** Streams the phase tried to open. */
  streamsAsked: number;
  openSeconds: number;
  open: {
    /** Opens per second offered; 0 when unpaced. */
    offeredPerSecond: number;
    /** Streams opened per second, first request to last answer. */
    achievedPerSecond: number;
    failed: number;
    /** Failures by kind (`429 PB_ERR_NODE_STREAMS_FULL`, `ECONNRESET`, `timeout`). */
    errors: Record<string, number>;
    /** Request → 200, ms: the worst generator's percentile. */
    ms: { p50: number; p99: number; max: number };
    /** How far behind schedule the last open was sent, ms (the worst generator). */
    behindMs: number;
    /** CPU from the first open to the last answer, per stream opened, µs. */
    cpuUsPerOpen: { server: number; redis: number | null; generators: number };
    /** The same per second of opening (1000 = one core): near 1000, the server is what bounds the rate. */
    cpuMsPerSecond: { server: number; redis: number | null };
    /** Cores busy with other work on the machine while opening. */
    otherCores: number;
  };
  /** Resident memory added per open stream, bytes (after the settle, before the window). */
  rssBytesPerStream: { server: number; redis: number | null };
  rssMb: {
    serverBefore: number;
    serverAfter: number;
    /** At the end of the quiet window. */
    serverAfterWindow: number;
    redisBefore: number | null;
    redisAfter: number | null;
  };
  /** postbox's own view (/metrics) before opening and after the settle; null for other targets. */
  inside: { before: ServerInside; after: ServerInside; heapBytesPerStream: number } | null;
  /** CPU over the quiet window, ms per second (1000 = one core). */
  cpuMsPerSecond: { server: number; redis: number | null; generators: number[] };
  /** The same per 1,000 open streams, µs per second. */
  cpuUsPerSecondPer1kStreams: { server: number; redis: number | null };
  machineBusyCores: number;
  /** Cores busy with other work on the machine during the window. */
  otherCores: number;
  windowSeconds: number;
  /** Streams that ended after opening (closed by the server or reset), up to the end of the window. */
  streamsLost: number;
  /** The quiet window in µs of CLOCK_MONOTONIC, the clock of `--cpu-prof` profiles. */
  monotonicUs: { from: number; to: number };
  /** The opening, likewise. */
  openMonotonicUs: { from: number; to: number };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export async function idlePhase(target: RunningTarget, pool: GeneratorPool, c: IdleConfig): Promise<IdleResult> {
  const users = Array.from({ length: c.streams }, (_, i) => `idle-${i}`);
  await pool.init(target.spec);
  if (target.spec.dialect === 'postbox') {
    const t = await pool.all<OpenResult>((i) => ({ cmd: 'tokens', users: pool.share(users, i), concurrency: 16 }));
    const failed = t.reduce((s, r) => s + r.failed, 0);
    if (failed > 0) throw new Error(`tokens: ${failed} failed (${t.find((r) => r.firstError)?.firstError ?? ''})`);
  }
  await sleep(1_000);
  const before = await snapshot(target, pool);
  const insideBefore = await target.inside();
  const rate = c.openRate ?? 0;
  const openFromUs = monotonicUs();
  const parts = await pool.all<PacedOpenResult>((i) => ({
    cmd: 'openPaced',
    users: pool.share(users, i),
    rate: rate / pool.size,
    maxInflight: c.openInflight ?? 32,
    timeoutMs: c.openTimeoutMs ?? 30_000,
  }));
  const openToUs = monotonicUs();
  const afterOpen = await snapshot(target, pool);
  const opening = figures(before, afterOpen, 0);
  const opened = parts.reduce((s, p) => s + p.opened, 0);
  if (opened === 0) throw new Error(`no stream opened: ${JSON.stringify(parts[0]?.errors ?? {})}`);
  const openSeconds = (Math.max(...parts.map((p) => p.endMs)) - Math.min(...parts.map((p) => p.startMs))) / 1000;
  const errors: Record<string, number> = {};
  for (const p of parts) for (const [kind, n] of Object.entries(p.errors)) errors[kind] = (errors[kind] ?? 0) + n;
  await sleep(c.settleMs);
  const a = await snapshot(target, pool);
  const insideAfter = await target.inside();
  const held = (await pool.stats(-1)).streamsOpen;
  const fromUs = monotonicUs();
  await sleep(c.windowMs);
  const toUs = monotonicUs();
  const b = await snapshot(target, pool);
  const stats = await pool.stats(-1);
  const w = figures(a, b, 0);
  const perStream = (x: number, y: number) => round((y - x) / held);
  const per1k = (msPerS: number | null) => (msPerS === null ? null : round((msPerS * 1000 * 1000) / held));
  const mb = (bytes: number) => round(bytes / 2 ** 20);
  const worst = (k: 'p50' | 'p99' | 'max') => round(Math.max(...parts.map((p) => p.openMs[k]).filter(Number.isFinite)));
  return {
    target: target.name,
    streams: stats.streamsOpen,
    streamsAsked: c.streams,
    openSeconds: round(openSeconds),
    open: {
      offeredPerSecond: rate,
      achievedPerSecond: round(opened / openSeconds),
      failed: parts.reduce((s, p) => s + p.failed, 0),
      errors,
      ms: { p50: worst('p50'), p99: worst('p99'), max: worst('max') },
      behindMs: round(Math.max(...parts.map((p) => p.behindMs))),
      cpuUsPerOpen: figures(before, afterOpen, opened).cpuUsPerMessage,
      cpuMsPerSecond: { server: opening.cpuMsPerSecond.server, redis: opening.cpuMsPerSecond.redis },
      otherCores: opening.otherCores,
    },
    rssBytesPerStream: {
      server: perStream(before.server.rssBytes, a.server.rssBytes),
      redis: before.redis && a.redis ? perStream(before.redis.rssBytes, a.redis.rssBytes) : null,
    },
    rssMb: {
      serverBefore: mb(before.server.rssBytes),
      serverAfter: mb(a.server.rssBytes),
      serverAfterWindow: mb(b.server.rssBytes),
      redisBefore: before.redis ? mb(before.redis.rssBytes) : null,
      redisAfter: a.redis ? mb(a.redis.rssBytes) : null,
    },
    inside:
      insideBefore === undefined || insideAfter === undefined
        ? null
        : { before: insideBefore, after: insideAfter, heapBytesPerStream: perStream(insideBefore.heapUsedBytes, insideAfter.heapUsedBytes) },
    cpuMsPerSecond: w.cpuMsPerSecond,
    cpuUsPerSecondPer1kStreams: { server: per1k(w.cpuMsPerSecond.server) ?? 0, redis: per1k(w.cpuMsPerSecond.redis) },
    machineBusyCores: w.machineBusyCores,
    otherCores: w.otherCores,
    windowSeconds: w.seconds,
    streamsLost: stats.streamsLost,
    monotonicUs: { from: fromUs, to: toUs },
    openMonotonicUs: { from: openFromUs, to: openToUs },
  };
}
