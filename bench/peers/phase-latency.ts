import { percentile, round } from '../lib.js';
import type { GeneratorPool } from './generator-pool.js';
import { figures, settle, snapshot, type WindowFigures } from './measure.js';
import type { OpenResult, RateResult } from './protocol.js';
import type { RunningTarget } from './targets.js';

/*
 * The job at a steady rate: USERS streams open (each acking like postbox's
 * client, where the target takes acks), single POSTs of 64-byte messages to
 * random users at RATE/s offered in an open loop, enqueue → receive latency
 * measured by the generator that receives each message.
 */

export interface LatencyConfig {
  users: number;
  /** Messages per second offered, all generators together. */
  rate: number;
  durationMs: number;
  warmupMs: number;
  /** Unanswered requests per generator before a scheduled send is skipped (and counted). */
  maxInflight: number;
  settleDeadlineMs: number;
  /** Where the streams open on a target of several nodes. @defaultValue 'one' */
  tabs?: Tabs;
}

/**
 * On a target of several nodes: `one` stream per user, the users round-robin
 * over the nodes; or a stream (a tab) on `every-node` for each user.
 */
export type Tabs = 'one' | 'every-node';

export interface LatencyResult extends WindowFigures {
  target: string;
  round: number;
  offeredPerSecond: number;
  streams: number;
  scheduled: number;
  sent: number;
  accepted: number;
  failed: number;
  notSent: number;
  firstError?: string;
  received: number;
  duplicates: number;
  /** Ids the server acked in the window (postbox only; the naive baseline takes acks and ignores them). */
  acked: number | null;
  ackRequests: number;
  /** Accepted but never received within the settle deadline. */
  lost: number;
  /** Messages the per-message figures divide by: received, and for postbox also acked. */
  messages: number;
  latencyMs: { samples: number; p50: number; p99: number; p999: number; max: number };
  requestMs: { p50: number; p99: number };
  /** The worst generator's p99 lag behind its send schedule, ms. */
  generatorLagP99Ms: number;
  streamsLost: number;
  /** The measured window in µs of CLOCK_MONOTONIC, the clock of `--cpu-prof` profiles. */
  monotonicUs: { from: number; to: number };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

let epochCounter = 1_000;

/**
 * Opens the users' streams on the target's `nodes` as `tabs` says, spread over
 * the generators (all of a user's tabs on one generator, which tells their
 * copies apart from a loss); throws unless all open.
 */
export async function openAudience(
  pool: GeneratorPool,
  users: string[],
  withTokens: boolean,
  placement: { nodes: number; tabs: Tabs } = { nodes: 1, tabs: 'one' },
): Promise<void> {
  if (withTokens) {
    const t = await pool.all<OpenResult>((i) => ({ cmd: 'tokens', users: pool.share(users, i), concurrency: 16 }));
    const bad = t.find((r) => r.failed > 0);
    if (bad !== undefined) throw new Error(`tokens: ${bad.failed} failed (${bad.firstError ?? ''})`);
  }
  const numbered = users.map((userId, n) => ({ userId, n }));
  for (let node = 0; node < placement.nodes; node += 1) {
    const here = (u: { n: number }) => placement.tabs === 'every-node' || u.n % placement.nodes === node;
    const opened = await pool.all<OpenResult>((i) => ({
      cmd: 'open',
      users: pool.share(numbered, i).filter(here).map((u) => u.userId),
      concurrency: 32,
      node,
    }));
    const failed = opened.reduce((s, r) => s + r.failed, 0);
    if (failed > 0) throw new Error(`${failed} streams did not open on node ${node}: ${opened.find((r) => r.firstError)?.firstError ?? ''}`);
  }
}

/** How `c.tabs` places streams on `target`. */
export function placementOf(target: RunningTarget, tabs: Tabs | undefined): { nodes: number; tabs: Tabs } {
  return { nodes: target.spec.nodes?.length ?? 1, tabs: tabs ?? 'one' };
}

/** Runs the open loop on every generator (each `rate / size`) and sums the outcome. */
async function offer(pool: GeneratorPool, epoch: number, users: string[], c: LatencyConfig, durationMs: number) {
  const parts = await pool.all<RateResult>(() => ({
    cmd: 'rate',
    epoch,
    users,
    rate: c.rate / pool.size,
    durationMs,
    maxInflight: c.maxInflight,
  }));
  const sum = (k: 'scheduled' | 'sent' | 'accepted' | 'failed' | 'notSent') => parts.reduce((s, p) => s + p[k], 0);
  return {
    scheduled: sum('scheduled'),
    sent: sum('sent'),
    accepted: sum('accepted'),
    failed: sum('failed'),
    notSent: sum('notSent'),
    firstError: parts.find((p) => p.firstError !== undefined)?.firstError,
    lagP99: Math.max(...parts.map((p) => p.lagMs.p99)),
    // Per-generator request percentiles; the worst generator's stands for all.
    requestMs: { p50: Math.max(...parts.map((p) => p.requestMs.p50)), p99: Math.max(...parts.map((p) => p.requestMs.p99)) },
  };
}

export async function latencyPhase(
  target: RunningTarget,
  pool: GeneratorPool,
  c: LatencyConfig,
  roundNo: number,
): Promise<LatencyResult> {
  const users = Array.from({ length: c.users }, (_, i) => `peer-${i}`);
  await pool.init(target.spec);
  await openAudience(pool, users, target.spec.dialect === 'postbox', placementOf(target, c.tabs));
  const countsAcks = target.name === 'postbox';

  // Warm-up at the same rate, not measured: JIT, connection pools, Redis keys of every user.
  const warm = epochCounter++;
  const ackedBeforeWarmUp = (await pool.stats(warm)).acked;
  const w = await offer(pool, warm, users, c, c.warmupMs);
  // Its acks too, so none of them is counted in the measured window.
  await settle(pool, [warm], w.accepted, { deadlineMs: c.settleDeadlineMs, ...(countsAcks ? { ackedFrom: ackedBeforeWarmUp } : {}) });

  const epoch = epochCounter++;
  const ackedFrom = (await pool.stats(epoch)).acked;
  const ackRequestsFrom = (await pool.stats(epoch)).ackRequests;
  const before = await snapshot(target, pool);
  const fromUs = monotonicUs();
  const o = await offer(pool, epoch, users, c, c.durationMs);
  const s = await settle(pool, [epoch], o.accepted, { deadlineMs: c.settleDeadlineMs, ...(countsAcks ? { ackedFrom } : {}) });
  const toUs = monotonicUs();
  const after = await snapshot(target, pool);
  const stats = await pool.stats(epoch, true);
  const samples = stats.samples ?? [];
  const messages = countsAcks ? Math.min(s.received, s.acked ?? 0) : s.received;
  return {
    target: target.name,
    round: roundNo,
    offeredPerSecond: c.rate,
    streams: stats.streamsOpen,
    scheduled: o.scheduled,
    sent: o.sent,
    accepted: o.accepted,
    failed: o.failed,
    notSent: o.notSent,
    ...(o.firstError === undefined ? {} : { firstError: o.firstError }),
    received: s.received,
    duplicates: s.duplicates,
    acked: countsAcks ? s.acked : null,
    ackRequests: stats.ackRequests - ackRequestsFrom,
    lost: Math.max(0, o.accepted - s.received),
    messages,
    latencyMs: {
      samples: samples.length,
      p50: round(percentile(samples, 50)),
      p99: round(percentile(samples, 99)),
      p999: round(percentile(samples, 99.9)),
      max: round(percentile(samples, 100)),
    },
    requestMs: { p50: round(o.requestMs.p50), p99: round(o.requestMs.p99) },
    generatorLagP99Ms: round(o.lagP99),
    streamsLost: stats.streamsLost,
    monotonicUs: { from: fromUs, to: toUs },
    ...figures(before, after, messages),
  };
}
