import { round } from '../lib.js';
import type { GeneratorPool } from './generator-pool.js';
import { figures, settle, snapshot, type WindowFigures } from './measure.js';
import { openAudience, placementOf, type Tabs } from './phase-latency.js';
import type { ClosedResult } from './protocol.js';
import type { RunningTarget } from './targets.js';

/*
 * Saturation with the same audience open and acking: closed-loop POSTs,
 * concurrency stepped up, each step a fixed window; the best step's rate is
 * the target's. postbox also gets its batch route. Every message sent is
 * then waited for on the streams, so a rate that outruns delivery shows up.
 */

export interface SaturationConfig {
  users: number;
  /** Concurrent requests of each step, all generators together. */
  concurrency: number[];
  windowMs: number;
  /** postbox's batch route: messages per request and the concurrency steps. */
  batch: { size: number; concurrency: number[] };
  /** Closed loop before the steps, not measured. */
  warmup: { concurrency: number; durationMs: number };
  settleDeadlineMs: number;
  /** Where the streams open on a target of several nodes. @defaultValue 'one' */
  tabs?: Tabs;
  /**
   * Use the streams the last phase left open on this target (the same users and placement)
   * instead of opening them afresh. @defaultValue false
   */
  keepStreams?: boolean;
}

export interface SaturationStep extends WindowFigures {
  route: 'single' | 'batch';
  batchSize: number;
  concurrency: number;
  messages: number;
  requests: number;
  failed: number;
  firstError?: string;
  perSecond: number;
  /** Ids the server acked within the window, per second: delivery keeping up with the POSTs (null without acks). */
  ackedPerSecond: number | null;
  /** The step's window in µs of CLOCK_MONOTONIC, the clock of `--cpu-prof` profiles. */
  monotonicUs: { from: number; to: number };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export interface SaturationResult {
  target: string;
  steps: SaturationStep[];
  /** The best single-POST step, messages/s. */
  bestSingle: number;
  /** The best batch step, messages/s (postbox only). */
  bestBatch: number | null;
  /** The most acked per second in a single-POST step (null without acks). */
  bestSingleAcked: number | null;
  /** Messages sent, warm-up included, and received. */
  sent: number;
  received: number;
  duplicates: number;
  acked: number | null;
  lost: number;
  /** How long the streams took to catch up after the last step, ms. */
  catchUpMs: number;
}

let epochCounter = 2_000;

export async function saturationPhase(target: RunningTarget, pool: GeneratorPool, c: SaturationConfig): Promise<SaturationResult> {
  const users = Array.from({ length: c.users }, (_, i) => `peer-${i}`);
  if (c.keepStreams !== true) {
    await pool.init(target.spec);
    await openAudience(pool, users, target.spec.dialect === 'postbox', placementOf(target, c.tabs));
  }
  const countsAcks = target.name === 'postbox';
  const ackedFrom = (await pool.stats(-1)).acked;
  const plan: Array<{ route: 'single' | 'batch'; size: number; concurrency: number }> = [
    ...c.concurrency.map((n) => ({ route: 'single' as const, size: 1, concurrency: n })),
    ...(target.name === 'postbox' ? c.batch.concurrency.map((n) => ({ route: 'batch' as const, size: c.batch.size, concurrency: n })) : []),
  ];
  const steps: SaturationStep[] = [];
  const epochs: number[] = [];
  // Warm-up, not measured but counted in the sent/received check: JIT, pools, every user's keys.
  const warm = epochCounter++;
  epochs.push(warm);
  const warmUp = await pool.all<ClosedResult>(() => ({
    cmd: 'closed',
    epoch: warm,
    users,
    concurrency: Math.max(1, Math.floor(c.warmup.concurrency / pool.size)),
    durationMs: c.warmup.durationMs,
    batch: 1,
  }));
  const warmSent = warmUp.reduce((s, r) => s + r.messages, 0);
  for (const p of plan) {
    const epoch = epochCounter++;
    epochs.push(epoch);
    const before = await snapshot(target, pool);
    const fromUs = monotonicUs();
    const parts = await pool.all<ClosedResult>((i) => ({
      cmd: 'closed',
      epoch,
      users,
      // The steps' concurrency is split evenly; a remainder goes to the first generators.
      concurrency: Math.floor(p.concurrency / pool.size) + (i < p.concurrency % pool.size ? 1 : 0),
      durationMs: c.windowMs,
      batch: p.size,
    }));
    const toUs = monotonicUs();
    const after = await snapshot(target, pool);
    const messages = parts.reduce((s, r) => s + r.messages, 0);
    const seconds = Math.max(...parts.map((r) => r.seconds));
    const firstError = parts.find((r) => r.firstError !== undefined)?.firstError;
    steps.push({
      route: p.route,
      batchSize: p.size,
      concurrency: p.concurrency,
      messages,
      requests: parts.reduce((s, r) => s + r.requests, 0),
      failed: parts.reduce((s, r) => s + r.failed, 0),
      ...(firstError === undefined ? {} : { firstError }),
      perSecond: round(messages / seconds),
      ackedPerSecond: countsAcks ? round((after.acked - before.acked) / (after.server.at - before.server.at)) : null,
      monotonicUs: { from: fromUs, to: toUs },
      ...figures(before, after, messages),
    });
    const last = steps.at(-1);
    console.log(`    ${target.name} ${p.route} ×${p.concurrency}: ${last?.perSecond}/s (${last?.failed} failed)`);
  }
  const sent = warmSent + steps.reduce((s, r) => s + r.messages, 0);
  const s = await settle(pool, epochs, sent, { deadlineMs: c.settleDeadlineMs, ...(countsAcks ? { ackedFrom } : {}) });
  const best = (route: 'single' | 'batch') => Math.max(0, ...steps.filter((r) => r.route === route).map((r) => r.perSecond));
  return {
    target: target.name,
    steps,
    bestSingle: best('single'),
    bestBatch: target.name === 'postbox' ? best('batch') : null,
    bestSingleAcked: countsAcks ? Math.max(0, ...steps.filter((r) => r.route === 'single').map((r) => r.ackedPerSecond ?? 0)) : null,
    sent,
    received: s.received,
    duplicates: s.duplicates,
    acked: s.acked,
    lost: Math.max(0, sent - s.received),
    catchUpMs: s.ms,
  };
}
