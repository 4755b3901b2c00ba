import { round, sleep } from '../lib.js';
import type { GeneratorPool } from './generator-pool.js';
import { figures, snapshot } from './measure.js';
import { openAudience } from './phase-latency.js';
import type { OpenResult } from './protocol.js';
import type { RunningTarget } from './targets.js';

/*
 * What an open, quiet stream costs: STREAMS streams opened on a fresh
 * target (tokens issued first, so their cost is not counted), the resident
 * memory they add, then CPU over a quiet window (heartbeats, drain ticks,
 * housekeeping: whatever the server does for streams that receive nothing).
 */

export interface IdleConfig {
  streams: number;
  /** Quiet time after opening, before the window, ms. */
  settleMs: number;
  windowMs: number;
}

export interface IdleResult {
  target: string;
  streams: number;
  openSeconds: number;
  /** Resident memory added per open stream, bytes. */
  rssBytesPerStream: { server: number; redis: number | null };
  rssMb: { serverBefore: number; serverAfter: number; redisBefore: number | null; redisAfter: number | null };
  /** CPU over the quiet window, ms per second (1000 = one core). */
  cpuMsPerSecond: { server: number; redis: number | null; generators: number[] };
  /** The same per 1,000 open streams, µs per second. */
  cpuUsPerSecondPer1kStreams: { server: number; redis: number | null };
  machineBusyCores: number;
  /** Cores busy with other work on the machine during the window. */
  otherCores: number;
  windowSeconds: number;
  streamsLost: number;
  /** The quiet window in µs of CLOCK_MONOTONIC, the clock of `--cpu-prof` profiles. */
  monotonicUs: { from: number; to: number };
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
  const t0 = performance.now();
  await openAudience(pool, users, false);
  const openSeconds = (performance.now() - t0) / 1000;
  await sleep(c.settleMs);
  const a = await snapshot(target, pool);
  const fromUs = monotonicUs();
  await sleep(c.windowMs);
  const toUs = monotonicUs();
  const b = await snapshot(target, pool);
  const stats = await pool.stats(-1);
  const w = figures(a, b, 0);
  const perStream = (x: number, y: number) => round((y - x) / c.streams);
  const per1k = (msPerS: number | null) => (msPerS === null ? null : round((msPerS * 1000 * 1000) / c.streams));
  const mb = (bytes: number) => round(bytes / 2 ** 20);
  return {
    target: target.name,
    streams: stats.streamsOpen,
    openSeconds: round(openSeconds),
    rssBytesPerStream: {
      server: perStream(before.server.rssBytes, a.server.rssBytes),
      redis: before.redis && a.redis ? perStream(before.redis.rssBytes, a.redis.rssBytes) : null,
    },
    rssMb: {
      serverBefore: mb(before.server.rssBytes),
      serverAfter: mb(a.server.rssBytes),
      redisBefore: before.redis ? mb(before.redis.rssBytes) : null,
      redisAfter: a.redis ? mb(a.redis.rssBytes) : null,
    },
    cpuMsPerSecond: w.cpuMsPerSecond,
    cpuUsPerSecondPer1kStreams: { server: per1k(w.cpuMsPerSecond.server) ?? 0, redis: per1k(w.cpuMsPerSecond.redis) },
    machineBusyCores: w.machineBusyCores,
    otherCores: w.otherCores,
    windowSeconds: w.seconds,
    streamsLost: stats.streamsLost,
    monotonicUs: { from: fromUs, to: toUs },
  };
}
