import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../test/helpers/start-redis.js';
import { HttpClient, machineInfo, round, runMain, sleep } from './lib.js';
import { deliveryWithAcks, latency, prefill, type Audience } from './delivery.js';
import { batchEnqueue, singleEnqueue, warmUp, type BenchConfig, type PhaseContext, type PhaseResult } from './phases.js';
import { fanoutBench } from './fanout.js';
import { startServer, type BenchServer } from './server.js';

/*
 * `npm run bench`: a private redis-server (append-only, fsync every second),
 * postbox in its own process on 127.0.0.1, and this process as the load
 * generator. Prints a table and writes bench/results.json.
 */

const CONFIG: BenchConfig = {
  phaseDeadlineMs: 20_000,
  payloadBytes: 100,
  warmup: 2_000,
  single: { total: 20_000, concurrency: 64, users: 1_000 },
  batches: [
    { size: 100, total: 50_000, concurrency: 8, users: 1_000 },
    { size: 1_000, total: 100_000, concurrency: 4, users: 1_000 },
  ],
  delivery: { streams: 200, perUser: 500, ack: { batch: 50, delayMs: 10 } },
  latency: { rates: [200, 500], maxFraction: 0.25, durationMs: 10_000 },
  idleMs: 3_000,
};

/** The whole run, teardown included, is killed past this. */
const WATCHDOG_MS = 240_000;
const RESULTS = fileURLToPath(new URL('results.json', import.meta.url));

interface CpuSeconds {
  server: number;
  redis: number;
  generator: number;
}

type MeasuredPhase = PhaseResult & {
  /** CPU time spent per message in the phase, µs: what a loaded machine distorts least. */
  cpuUsPerMessage: CpuSeconds;
  serverRssMb: number;
};

function infoField(info: string, field: string): number {
  const match = new RegExp(`^${field}:(\\S+)`, 'm').exec(info);
  return match?.[1] === undefined ? Number.NaN : Number(match[1]);
}

async function main(): Promise<number> {
  const loadBefore = os.loadavg();
  const started = new Date();
  let redis: TestRedis | undefined;
  let server: BenchServer | undefined;
  let audience: Audience | undefined;
  let producer: HttpClient | undefined;
  let rc: Redis | undefined;

  const teardown = async () => {
    audience?.close();
    producer?.close();
    const code = await server?.stop();
    rc?.disconnect();
    // SIGTERM lets redis-server flush its append-only file; stop() then removes the temp dir.
    await redis?.kill('SIGTERM');
    await redis?.stop();
    return code;
  };
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: still running after ${WATCHDOG_MS / 1000} s; stopping\n`);
    void teardown().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();
  process.once('SIGINT', () => void teardown().finally(() => process.exit(130)));

  try {
    redis = await startRedis();
    rc = redis.client();
    const redisClient = rc;
    server = await startServer(redis.url);
    const srv = server;
    producer = new HttpClient(srv.url, CONFIG.single.concurrency);
    const ctx: PhaseContext = { baseUrl: srv.url, producer, config: CONFIG, scrape: () => srv.metrics() };
    console.log(`bench: postbox pid ${srv.pid} at ${srv.url}, redis at ${redis.url}; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);

    const cpu = async (): Promise<CpuSeconds> => {
      const metrics = await srv.metrics();
      const info = await redisClient.info('cpu');
      const own = process.cpuUsage();
      return {
        server: metrics.get('postbox_process_cpu_seconds_total') ?? Number.NaN,
        redis: infoField(info, 'used_cpu_user') + infoField(info, 'used_cpu_sys'),
        generator: (own.user + own.system) / 1e6,
      };
    };
    const rssMb = async () => ((await srv.metrics()).get('postbox_process_resident_memory_bytes') ?? Number.NaN) / 2 ** 20;
    const phases: MeasuredPhase[] = [];
    const measure = async <T extends { result: PhaseResult }>(run: () => Promise<T>): Promise<T> => {
      const before = await cpu();
      const out = await run();
      const after = await cpu();
      const per = (k: keyof CpuSeconds) => round(((after[k] - before[k]) * 1e6) / Math.max(1, out.result.messages));
      const phase: MeasuredPhase = {
        ...out.result,
        cpuUsPerMessage: { server: per('server'), redis: per('redis'), generator: per('generator') },
        serverRssMb: round(await rssMb()),
      };
      phases.push(phase);
      console.log(`  ${phase.name}: ${phase.messages} messages in ${phase.seconds} s → ${phase.perSecond}/s`);
      return out;
    };

    await warmUp(ctx);
    const single = await measure(async () => ({ result: await singleEnqueue(ctx) }));
    for (const spec of CONFIG.batches) await measure(async () => ({ result: await batchEnqueue(ctx, spec) }));
    const prefilled = await prefill(ctx);
    const delivered = await measure(() => deliveryWithAcks(ctx, prefilled));
    audience = delivered.audience;
    const open = audience;

    // Background cost: the streams are open and idle (heartbeats, drain ticks, housekeeping jobs).
    const idleBefore = await cpu();
    await sleep(CONFIG.idleMs);
    const idleAfter = await cpu();
    const idle = {
      seconds: CONFIG.idleMs / 1000,
      serverCpuMsPerS: round(((idleAfter.server - idleBefore.server) * 1000 * 1000) / CONFIG.idleMs),
      redisCpuMsPerS: round(((idleAfter.redis - idleBefore.redis) * 1000 * 1000) / CONFIG.idleMs),
    };
    console.log(`  idle with ${open.subscribers.length} streams: server ${idle.serverCpuMsPerS} ms CPU/s, redis ${idle.redisCpuMsPerS} ms CPU/s`);

    // Fixed rates so runs compare, but never above a quarter of the measured enqueue rate:
    // each of these messages also costs a drain pass and an ack request of its own.
    const ceiling = Math.max(50, Math.floor((single.result.perSecond * CONFIG.latency.maxFraction) / 50) * 50);
    const rates = CONFIG.latency.rates.map((r) => Math.min(r, ceiling));
    for (const rate of rates) await measure(async () => ({ result: await latency(ctx, open, rate) }));

    // Room fan-out: one message to a 10k-member room, appended to every member's mailbox.
    const fanout = await fanoutBench(srv.url, redis.url, { members: 10_000, runs: 3 });
    console.log(`  room fan-out, ${fanout.members} members: ${fanout.deliveriesPerSecond} member deliveries/s (job ${fanout.jobMs} ms)`);

    const serverRssMb = round(await rssMb());
    const redisMemory = await redisClient.info('memory');
    const redisServer = await redisClient.info('server');
    const report = {
      date: started.toISOString(),
      machine: machineInfo(loadBefore),
      node: process.version,
      redis: { version: redisServer.match(/^redis_version:(\S+)/m)?.[1] ?? 'unknown', appendfsync: 'everysec' },
      config: { ...CONFIG, latencyRates: rates, server: 'defaults, NODE_ENV=production, LOG_LEVEL=warn' },
      phases,
      fanout,
      idle,
      end: {
        serverRssMb,
        redisUsedMemoryMb: round(infoField(redisMemory, 'used_memory') / 2 ** 20),
        serverLogLines: srv.warnings(),
      },
    };
    writeFileSync(RESULTS, JSON.stringify(report, null, 2) + '\n');
    printTable(phases);
    console.log(
      `\nroom fan-out, ${fanout.members} members: ${fanout.deliveriesPerSecond} member deliveries/s; job ${fanout.jobMs} ms, POST to done ${fanout.endToEndMs} ms; redis ${fanout.redisCpuUsPerDelivery} µs CPU per delivery`,
    );
    console.log(`\nserver RSS at end ${serverRssMb} MB; redis used_memory ${report.end.redisUsedMemoryMb} MB; server log lines (warn+) ${srv.warnings()}`);
    console.log(`load average before ${report.machine.loadAverageBefore.join(' ')}, after ${report.machine.loadAverageAfter.join(' ')} (${report.machine.cores} cores)`);
    console.log(`results written to ${RESULTS}`);
    const failures = phases.filter((p) => p.failed > 0);
    for (const p of failures) console.error(`FAILED in ${p.name}: ${p.failed} messages (${p.firstError ?? 'not received'})`);
    return failures.length > 0 ? 1 : 0;
  } catch (err) {
    const tail = server?.logTail() ?? '';
    if (tail !== '') process.stderr.write(`server log (tail):\n${tail}\n`);
    throw err;
  } finally {
    const code = await teardown();
    clearTimeout(watchdog);
    if (code !== undefined && code !== 0) process.exitCode = 1;
  }
}

function printTable(phases: MeasuredPhase[]): void {
  const rows = phases.map((p) => [
    p.name + (p.cutShort ? ' (deadline)' : ''),
    String(p.messages),
    String(p.seconds),
    String(p.perSecond),
    p.requestMs ? `${p.requestMs.p50} / ${p.requestMs.p99}` : '',
    p.latencyMs ? [p.latencyMs.p50, p.latencyMs.p99, p.latencyMs.p999 ?? '-', p.latencyMs.max].join(' / ') : '',
    p.serverEnqueueToWriteMs ? `≤ ${p.serverEnqueueToWriteMs.p50} / ≤ ${p.serverEnqueueToWriteMs.p99}` : '',
    `${p.cpuUsPerMessage.server} / ${p.cpuUsPerMessage.redis} / ${p.cpuUsPerMessage.generator}`,
  ]);
  const head = [
    'phase',
    'messages',
    's',
    'msg/s',
    'request ms p50 / p99',
    'latency ms p50 / p99 / p99.9 / max',
    'server enqueue→write ms p50 / p99',
    'CPU µs/msg server / redis / generator',
  ];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  console.log('');
  console.log(line(head));
  console.log(line(head.map((_, i) => (i === 0 ? '---' : '---:'))));
  for (const row of rows) console.log(line(row));
}

runMain('bench', main);
