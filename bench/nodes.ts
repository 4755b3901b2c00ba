import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo, round, runMain, sleep, versionOf } from './lib.js';
import { renderNodesReport, scenarioLabel, type NodesReport, type Scenario, type ScenarioResult } from './nodes/report.js';
import { startGeneratorPool, type GeneratorPool } from './peers/generator-pool.js';
import { figures, snapshot } from './peers/measure.js';
import { latencyPhase, type LatencyConfig } from './peers/phase-latency.js';
import { saturationPhase, type SaturationConfig } from './peers/phase-saturation.js';
import { startPostbox, startRedisBackend, type RedisBackend, type RunningTarget } from './peers/targets.js';

/*
 * `npm run bench:nodes`: postbox on 1, 2 and 3 nodes, on one redis-server and
 * on a 3-master Redis Cluster, everything on loopback. 1,000 users, each with
 * one stream (users round-robin over the nodes) or with a tab on every node
 * (the drain lease and the frames published to the other nodes); producers
 * POST single messages to random users through random nodes, first at a
 * fixed rate (latency, CPU per message), then in a closed loop (saturation);
 * the streams ack as the client library does. The one redis-server and the
 * cluster are started once; each node count starts fresh nodes on an emptied
 * Redis (FLUSHALL), and its two placements run on them one after the other,
 * which keeps the run within 5 minutes on a busy 2-core machine. Writes bench/nodes-results.json and
 * bench/nodes.md (`--quick`: shorter windows, written to a temp dir;
 * `--render <results.json>`: writes the nodes.md beside it again, nothing run).
 */

/** Everything, teardown included, is stopped past this. */
const WATCHDOG_MS = 295_000;
/** No configuration starts after this much of the run; the report says which were skipped. */
const BUDGET_MS = 250_000;
const GENERATORS = 2;
/** A quiet window with the streams open and no messages: the nodes' background CPU, ms (/proc counts 10 ms ticks). */
const QUIET_MS = 3_000;

function configs(quick: boolean): { latency: LatencyConfig; saturation: SaturationConfig } {
  const q = quick ? 0.4 : 1;
  return {
    // 150 msgs/s: below the saturation rate of every configuration on this 2-core machine.
    latency: { users: 1_000, rate: 150, durationMs: 5_000 * q, warmupMs: 1_000 * q, maxInflight: 64, settleDeadlineMs: 10_000 },
    saturation: {
      users: 1_000,
      concurrency: [64],
      windowMs: 4_000 * q,
      batch: { size: 100, concurrency: [] },
      warmup: { concurrency: 64, durationMs: 1_000 * q },
      settleDeadlineMs: 15_000,
    },
  };
}

/**
 * By node count, one Redis then the cluster, so that the machine's other work, which comes and
 * goes, weighs on both alike; one node is the same with either placement, so it runs once.
 */
const SCENARIOS: Scenario[] = [1, 2, 3].flatMap((nodes) =>
  (['single', 'cluster'] as const).flatMap((redis) =>
    (nodes === 1 ? (['one'] as const) : (['one', 'every-node'] as const)).map((tabs) => ({ nodes, redis, tabs })),
  ),
);

async function runScenario(s: Scenario, target: RunningTarget, pool: GeneratorPool, cfg: ReturnType<typeof configs>) {
  const latency = await latencyPhase(target, pool, { ...cfg.latency, tabs: s.tabs }, 1);
  // The same streams, open and quiet: what the nodes and Redis spend with no messages.
  const a = await snapshot(target, pool);
  await sleep(QUIET_MS);
  const quiet = figures(a, await snapshot(target, pool), 0).cpuMsPerSecond;
  const saturation = await saturationPhase(target, pool, { ...cfg.saturation, tabs: s.tabs, keepStreams: true });
  return { latency, quiet: { server: quiet.server, redis: quiet.redis ?? 0 }, saturation };
}

/** Writes nodes.md from `report` into `dir` and prints it. */
function writeTable(report: NodesReport, dir: string): void {
  const table = renderNodesReport(report);
  writeFileSync(join(dir, 'nodes.md'), table);
  console.log(`\n${table}`);
}

async function main(): Promise<number> {
  const render = process.argv.indexOf('--render');
  if (render > 0) {
    const file = process.argv[render + 1] ?? '';
    writeTable(JSON.parse(readFileSync(file, 'utf8')) as NodesReport, dirname(file));
    return 0;
  }
  const quick = process.argv.includes('--quick');
  const cfg = configs(quick);
  const started = Date.now();
  const loadBefore = os.loadavg();
  const pool = await startGeneratorPool(GENERATORS);
  const backends: Partial<Record<Scenario['redis'], RedisBackend>> = {};
  /** The nodes of the configurations under way, from the moment they start starting, so a watchdog stops them too. */
  let running: { key: string; target: Promise<RunningTarget> } | undefined;
  const stopRunning = async () => {
    const target = await running?.target.catch(() => undefined);
    running = undefined;
    await target?.stop();
  };
  /** The nodes for `s`: those under way if they match, else fresh ones (the others stopped first). */
  const nodesFor = async (s: Scenario): Promise<{ target: RunningTarget; startSeconds: number | undefined }> => {
    const key = `${s.redis} ${s.nodes}`;
    if (running?.key === key) return { target: await running.target, startSeconds: undefined };
    await stopRunning();
    const t0 = performance.now();
    running = { key, target: startPostbox({ nodes: s.nodes, backend: backends[s.redis] as RedisBackend }) };
    const target = await running.target;
    return { target, startSeconds: round((performance.now() - t0) / 1000) };
  };
  const stopAll = async () => {
    await stopRunning().catch(() => undefined);
    await Promise.all(Object.values(backends).map((b) => b.stop().catch(() => undefined)));
    await pool.close();
  };
  const watchdog = setTimeout(() => {
    console.error(`bench:nodes: still running after ${WATCHDOG_MS / 1000} s; stopping`);
    void stopAll().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();
  process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));

  console.log(`bench:nodes: ${SCENARIOS.length} configurations; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  const results: ScenarioResult[] = [];
  const skipped: string[] = [];
  const failures: Array<{ scenario: string; error: string }> = [];
  try {
    backends.single = await startRedisBackend();
    backends.cluster = await startRedisBackend(3);
    for (const s of SCENARIOS) {
      const label = scenarioLabel(s);
      if (Date.now() - started > BUDGET_MS) {
        skipped.push(label);
        continue;
      }
      console.log(`  ${label}`);
      const t0 = Date.now();
      try {
        const { target, startSeconds } = await nodesFor(s);
        const r = await runScenario(s, target, pool, cfg);
        results.push({ ...s, ...r, startSeconds: startSeconds ?? null, logLines: target.logLines() ?? 0 });
        const l = r.latency;
        console.log(
          `    ${cfg.latency.rate}/s: p50 ${l.latencyMs.p50} p99 ${l.latencyMs.p99} ms, server ${l.cpuUsPerMessage.server} µs/msg, ` +
            `redis ${l.cpuUsPerMessage.redis} µs/msg, ${l.redisPublish?.perMessage ?? 0} SPUBLISH/msg, lost ${l.lost}; ` +
            `saturation ${r.saturation.bestSingleAcked}/s acked (${r.saturation.bestSingle}/s sent), lost ${r.saturation.lost}`,
        );
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        console.error(`  ${label} failed: ${error}`);
        failures.push({ scenario: label, error });
        await stopRunning();
      } finally {
        await pool.all(() => ({ cmd: 'close' })).catch(() => undefined);
        console.log(`    ${round((Date.now() - t0) / 1000)} s`);
      }
    }
  } finally {
    await stopAll();
    clearTimeout(watchdog);
  }

  const report: NodesReport = {
    date: new Date(started).toISOString(),
    durationSeconds: round((Date.now() - started) / 1000),
    quick,
    machine: machineInfo(loadBefore),
    versions: {
      node: process.version,
      redis: versionOf('redis-server', ['--version'], /v=(\S+)/),
      postboxCommit: versionOf('git', ['rev-parse', '--short', 'HEAD'], /(\S+)/),
    },
    config: { ...cfg, generators: GENERATORS, quietMs: QUIET_MS, server: 'defaults, NODE_ENV=production, LOG_LEVEL=warn' },
    results,
    skipped,
    failures,
  };
  const out = quick ? mkdtempSync(join(os.tmpdir(), 'postbox-nodes-')) : fileURLToPath(new URL('.', import.meta.url));
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'nodes-results.json'), JSON.stringify(report, null, 2) + '\n');
  writeTable(report, out);
  console.log(`written to ${join(out, 'nodes-results.json')} and nodes.md`);
  const lost = results.filter((r) => r.latency.lost + r.saturation.lost > 0);
  for (const r of lost) console.error(`LOST messages in ${scenarioLabel(r)}`);
  return failures.length + lost.length + skipped.length > 0 ? 1 : 0;
}

runMain('bench:nodes', main);
