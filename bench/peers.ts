import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo, round, runMain, versionOf } from './lib.js';
import { renderChart } from './peers/chart.js';
import { startGeneratorPool, type GeneratorPool } from './peers/generator-pool.js';
import { ensureNchan, nchanVersions } from './peers/nchan.js';
import { parseOptions, SCALE_OPEN_RATE, SCALE_STREAMS, type PeersOptions } from './peers/options.js';
import { idlePhase, type IdleConfig, type IdleResult } from './peers/phase-idle.js';
import { latencyPhase, type LatencyConfig, type LatencyResult } from './peers/phase-latency.js';
import { saturationPhase, type SaturationConfig, type SaturationResult } from './peers/phase-saturation.js';
import { ephemeralPorts, openFilesLimits } from './peers/proc.js';
import { renderTable } from './peers/report.js';
import { fitStreams, renderScale, scaleNotes, type Fit, type ScaleReport } from './peers/scale.js';
import { startTarget, type RunningTarget, type TargetName } from './peers/targets.js';

/*
 * `npm run bench:peers`: the job users have (many users connected, each
 * getting a message now and then and acking it) on postbox, Nchan with memory
 * storage, Nchan with Redis storage and a naive SSE server, one after the
 * other within each measurement so the machine's noise hits them alike.
 * Writes bench/peers.json, bench/peers.md and bench/peers.svg.
 *
 * `npm run bench:scale` (this with --scale): the idle phase alone, 50,000
 * streams opened at 2,500/s on one node of each target, written to
 * bench/scale-results.json and bench/scale.md.
 */

/** The whole run is stopped past this, teardown included (the brief: under 10 minutes). */
const WATCHDOG_MS = 570_000;
/** The same for --scale, whose run is kept under 5 minutes. */
const SCALE_WATCHDOG_MS = 290_000;
/** With --scale, no target starts after this much of the run (one takes up to 80 s here). */
const SCALE_LAST_START_MS = 200_000;
/** postbox's default HEARTBEAT_MS, in s: how often Nchan pings its subscribers at --scale. */
const SCALE_NCHAN_PING_SECONDS = 15;
/** postbox's default MAX_STREAMS_PER_NODE (src/config.ts); the bench raises it for more streams. */
const DEFAULT_MAX_STREAMS = 20_000;
/** No second round of the 1,000 msgs/s phase starts after this much of the run. */
const SECOND_ROUND_BY_MS = 420_000;

function configs(o: PeersOptions): { latency: LatencyConfig; saturation: SaturationConfig; idle: IdleConfig } {
  const q = o.quick ? 0.3 : 1;
  return {
    latency: { users: 1_000, rate: 1_000, durationMs: 10_000 * q, warmupMs: 2_000 * q, maxInflight: 64, settleDeadlineMs: 15_000 },
    saturation: {
      users: 1_000,
      concurrency: [16, 64, 256],
      windowMs: 5_000 * q,
      batch: { size: 100, concurrency: [4, 16] },
      warmup: { concurrency: 16, durationMs: 2_000 * q },
      settleDeadlineMs: 30_000,
    },
    idle: o.scale
      ? // A window of one HEARTBEAT_MS (15 s): every stream is pinged about once in it.
        { streams: o.streams ?? SCALE_STREAMS, openRate: o.openRate ?? SCALE_OPEN_RATE, openInflight: 128, settleMs: 5_000, windowMs: 15_000 * q }
      : { streams: o.streams ?? (o.quick ? 2_000 : 10_000), openRate: o.openRate ?? 0, settleMs: 3_000, windowMs: 10_000 * q },
  };
}

/** The window of the fastest single-POST step: the profile "at saturation". */
function bestStep(result: SaturationResult | undefined): { from: number; to: number } | undefined {
  const singles = result?.steps.filter((s) => s.route === 'single') ?? [];
  return singles.sort((a, b) => b.perSecond - a.perSecond)[0]?.monotonicUs;
}

export interface Failure {
  phase: string;
  target: TargetName;
  error: string;
}

async function main(): Promise<number> {
  const options: PeersOptions = parseOptions(process.argv.slice(2));
  const cfg = configs(options);
  const started = Date.now();
  const loadBefore = os.loadavg();
  const nchan = options.targets.some((t) => t.startsWith('nchan')) ? ensureNchan() : { missing: 'not asked for' };
  const limits = { openFiles: openFilesLimits(), ports: ephemeralPorts() };
  const files = limits.openFiles.soft;
  if (files < cfg.idle.streams + 4_000) {
    console.error(
      files < limits.openFiles.hard
        ? `bench:peers: ${files} open files allowed; run it through npm run bench:peers or bench:scale (which raise ulimit -n)`
        : `bench:peers: ${files} open files allowed, the hard limit: HTTP/1.1 streams are held to what fits`,
    );
  }
  // Room for the idle phase's streams, whatever their number; at the defaults below 20,000 these are postbox's own.
  const maxStreams = Math.max(DEFAULT_MAX_STREAMS, cfg.idle.streams);
  const serverEnv = { MAX_STREAMS_PER_NODE: String(maxStreams), HTTP_MAX_CONNECTIONS: String(maxStreams + 1_000) };
  const watchdogMs = options.scale ? SCALE_WATCHDOG_MS : WATCHDOG_MS;

  let profileDir: string | undefined;
  const serverArgs = [...options.serverArgs];
  if (serverArgs.some((a) => a.startsWith('--cpu-prof')) && !serverArgs.some((a) => a.startsWith('--cpu-prof-dir'))) {
    profileDir = mkdtempSync(join(os.tmpdir(), 'postbox-peers-prof-'));
    serverArgs.push(`--cpu-prof-dir=${profileDir}`);
  }
  const postboxPids: Array<{ pid: number; phase: string; target: TargetName }> = [];

  const pool: GeneratorPool = await startGeneratorPool(options.generators);
  let running: RunningTarget | undefined;
  const watchdog = setTimeout(() => {
    console.error(`bench:peers: still running after ${watchdogMs / 1000} s; stopping`);
    void (running?.stop() ?? Promise.resolve())
      .then(() => pool.close())
      .finally(() => process.exit(1));
  }, watchdogMs);
  watchdog.unref();
  process.once('SIGINT', () => void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(130)));

  const latency: LatencyResult[] = [];
  const saturation: SaturationResult[] = [];
  const idle: IdleResult[] = [];
  const fits: Array<{ target: TargetName } & Fit> = [];
  const failures: Failure[] = [];
  const serverLogLines: Array<{ phase: string; target: TargetName; lines: number | null }> = [];

  /** Runs `fn` on a fresh `name`, stopped afterwards whatever happens; a failure is recorded, not thrown. */
  const on = async <T>(phase: string, name: TargetName, fn: (t: RunningTarget) => Promise<T>): Promise<T | undefined> => {
    if (name.startsWith('nchan') && 'missing' in nchan) {
      failures.push({ phase, target: name, error: nchan.missing });
      return undefined;
    }
    console.log(`  ${phase}: ${name}`);
    try {
      running = await startTarget(name, {
        serverArgs,
        serverEnv,
        // Idle streams cost what their keep-alives cost: at --scale Nchan pings as often as postbox (HEARTBEAT_MS, 15 s).
        ...(options.scale ? { nchanPingSeconds: SCALE_NCHAN_PING_SECONDS } : {}),
        ...('module' in nchan ? { nchanModule: nchan.module } : {}),
      });
      if (name.startsWith('postbox')) postboxPids.push({ pid: running.serverPids()[0] ?? 0, phase, target: name });
      const result = await fn(running);
      const lines = running.logLines();
      if (lines !== null && lines > 0) console.log(`    ${name} logged ${lines} lines at warn or above`);
      serverLogLines.push({ phase, target: name, lines });
      return result;
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      console.error(`  ${phase}: ${name} failed: ${error}`);
      failures.push({ phase, target: name, error });
      return undefined;
    } finally {
      await pool.all(() => ({ cmd: 'close' })).catch(() => undefined);
      await running?.stop();
      running = undefined;
    }
  };

  const latencyRound = async (r: number) => {
    for (const name of options.targets) {
      const res = await on(`latency round ${r}`, name, (t) => latencyPhase(t, pool, cfg.latency, r));
      if (res === undefined) continue;
      latency.push(res);
      console.log(
        `    ${res.messages} msgs, server ${res.cpuUsPerMessage.server} µs/msg, redis ${res.cpuUsPerMessage.redis ?? '-'} µs/msg, ` +
          `p50 ${res.latencyMs.p50} p99 ${res.latencyMs.p99} p99.9 ${res.latencyMs.p999} ms, lost ${res.lost}, not sent ${res.notSent}`,
      );
    }
  };

  console.log(`bench:peers: ${options.targets.join(', ')}; ${options.phases.join(', ')}; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  try {
    if (options.phases.includes('latency')) await latencyRound(1);
    if (options.phases.includes('saturation')) {
      for (const name of options.targets) {
        const res = await on('saturation', name, (t) => saturationPhase(t, pool, cfg.saturation));
        if (res !== undefined) saturation.push(res);
      }
    }
    if (options.phases.includes('idle')) {
      for (const name of options.targets) {
        if (options.scale && Date.now() - started > SCALE_LAST_START_MS) {
          failures.push({ phase: 'idle', target: name, error: `not started: the run is past ${SCALE_LAST_START_MS / 1000} s` });
          continue;
        }
        const fit: Fit = options.scale ? fitStreams(name, cfg.idle.streams, pool.size, limits) : { streams: cfg.idle.streams };
        fits.push({ target: name, ...fit });
        if (fit.boundBy !== undefined) console.log(`  ${name}: ${fit.streams} streams, bound by ${fit.boundBy}`);
        const res = await on('idle', name, (t) => idlePhase(t, pool, { ...cfg.idle, streams: fit.streams }));
        if (res === undefined) continue;
        idle.push(res);
        const failed = res.open.failed === 0 ? '' : ` (${res.open.failed} failed: ${JSON.stringify(res.open.errors)})`;
        console.log(
          `    ${res.streams} streams, opened at ${res.open.achievedPerSecond}/s${failed}, ${res.streamsLost} lost: ` +
            `+${res.rssBytesPerStream.server} B/stream server, +${res.rssBytesPerStream.redis ?? '-'} B/stream redis; ` +
            `${res.cpuMsPerSecond.server} ms/s server, ${res.cpuMsPerSecond.redis ?? '-'} ms/s redis`,
        );
      }
    }
    for (let r = 2; r <= options.rounds && options.phases.includes('latency'); r += 1) {
      if (Date.now() - started > SECOND_ROUND_BY_MS) {
        console.log(`  latency round ${r} skipped: the run is past ${SECOND_ROUND_BY_MS / 1000} s`);
        break;
      }
      await latencyRound(r);
    }
  } finally {
    await pool.close();
    clearTimeout(watchdog);
  }

  const versions = nchanVersions();
  const machine = { ...machineInfo(loadBefore), openFilesLimit: files };
  const allVersions = {
    node: process.version,
    redis: versionOf('redis-server', ['--version'], /v=(\S+)/),
    ...versions,
    postboxCommit: versionOf('git', ['rev-parse', '--short', 'HEAD'], /(\S+)/),
  };
  const root = fileURLToPath(new URL('.', import.meta.url));
  const out = options.out ?? (options.full ? root : mkdtempSync(join(os.tmpdir(), 'postbox-peers-')));
  mkdirSync(out, { recursive: true });
  if (options.scale) {
    const scale: ScaleReport & Record<string, unknown> = {
      date: new Date(started).toISOString(),
      durationSeconds: round((Date.now() - started) / 1000),
      options: { ...options, serverArgs },
      machine,
      limits,
      versions: allVersions,
      streamsAsked: cfg.idle.streams,
      config: { idle: cfg.idle, serverEnv, generators: pool.size },
      notes: scaleNotes(pool.size),
      fits,
      idle,
      serverLogLines,
      failures,
    };
    const table = renderScale(scale);
    writeFileSync(join(out, 'scale-results.json'), JSON.stringify(scale, null, 2) + '\n');
    writeFileSync(join(out, 'scale.md'), table);
    console.log(`\n${table}`);
    console.log(`written to ${join(out, 'scale-results.json')}, scale.md`);
  }
  const report = {
    date: new Date(started).toISOString(),
    durationSeconds: round((Date.now() - started) / 1000),
    options: { ...options, serverArgs },
    machine,
    versions: allVersions,
    config: cfg,
    notes: [
      'Each measurement runs on every target back to back; every target is started fresh for each one and stopped after.',
      'postbox: NODE_ENV=production, defaults, its own redis-server (appendonly yes, appendfsync everysec). Figures per delivered-and-acked message.',
      'Nchan: nginx with libnginx-mod-nchan, 1 worker, a channel per user, nchan_message_buffer_length 100; Redis storage via an upstream with nchan_redis_server (distributed mode), its own redis-server configured as postbox\'s. No acks: figures per delivered message.',
      'naive: bench/baselines/naive-sse.ts, an in-memory array per user drained every 50 ms; acks accepted and ignored.',
      'CPU is utime+stime from /proc/<pid>/stat of the server (nginx: master and worker) and of its Redis; generators report their own.',
    ],
    latency,
    saturation,
    idle,
    serverLogLines,
    failures,
  };
  if (!options.scale) {
    const table = renderTable(report);
    writeFileSync(join(out, 'peers.json'), JSON.stringify(report, null, 2) + '\n');
    writeFileSync(join(out, 'peers.md'), table);
    writeFileSync(join(out, 'peers.svg'), renderChart(report));
    console.log(`\n${table}`);
    console.log(`written to ${join(out, 'peers.json')}, peers.md, peers.svg`);
  }
  if (profileDir !== undefined) {
    // Node names profiles CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main one.
    for (const file of readdirSync(profileDir).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f))) {
      const run = postboxPids.find((p) => file.includes(`.${p.pid}.0.`));
      const quiet = run?.phase === 'idle' ? idle.find((r) => r.target === run.target) : undefined;
      const windows: Array<[string, { from: number; to: number } | undefined]> = quiet
        ? [
            ['opening', quiet.openMonotonicUs],
            ['quiet window', quiet.monotonicUs],
          ]
        : [
            [
              'measured window',
              latency.find((r) => r.target === 'postbox' && run?.phase === `latency round ${r.round}`)?.monotonicUs ??
                (run?.phase === 'saturation' ? bestStep(saturation.find((r) => r.target === 'postbox')) : undefined),
            ],
          ];
      for (const [label, w] of windows) {
        const window = w === undefined ? '' : ` --from ${w.from} --to ${w.to}`;
        console.log(
          `cpu profile of ${run?.target ?? 'postbox'}, ${run?.phase ?? 'unknown phase'}, ${label}: npx tsx bench/profile-summary.ts ${join(profileDir, file)}${window}`,
        );
      }
    }
  }
  for (const f of failures) console.error(`FAILED ${f.phase} / ${f.target}: ${f.error}`);
  return failures.length > 0 ? 1 : 0;
}

runMain('bench:peers', main);
