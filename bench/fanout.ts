import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bullPrefix } from '../src/queue/job-queues.js';
import { bullConnection } from '../src/queue/redis.js';
import { startRedis, type TestRedis } from '../test/helpers/start-redis.js';
import { HttpClient, round, sleep } from './lib.js';
import { BENCH_KEYS, startServer, type BenchServer } from './server.js';

/*
 * Room fan-out rate: a room of `members` members, one room message at a
 * time, timed from the job's start to its end as BullMQ records them
 * (processedOn → finishedOn), and from the POST to the end. Run alone with
 * `npx tsx bench/fanout.ts`; it prints one JSON line.
 */

export interface FanoutBenchOptions {
  /** @defaultValue 10000 */
  members?: number;
  /** Measured room messages, after one warm-up. @defaultValue 3 */
  runs?: number;
}

export interface FanoutBenchResult {
  bench: 'fanout';
  members: number;
  runs: number;
  /** Median over the runs of members / (finishedOn − processedOn): member deliveries/s. */
  deliveriesPerSecond: number;
  /** Median job time, ms. */
  jobMs: number;
  /** Median time from the POST to the job's end, ms. */
  endToEndMs: number;
  /** Redis CPU time per member delivery over the measured runs, µs: what a loaded machine distorts least. */
  redisCpuUsPerDelivery: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

/** Fans room messages out through a running server at `baseUrl` whose Redis is `redisUrl` (KEY_PREFIX pb). */
export async function fanoutBench(
  baseUrl: string,
  redisUrl: string,
  options: FanoutBenchOptions = {},
): Promise<FanoutBenchResult> {
  const members = options.members ?? 10_000;
  const runs = options.runs ?? 3;
  const http = new HttpClient(baseUrl, 4);
  const queue = new Queue('fanout', { prefix: bullPrefix('pb'), connection: bullConnection({ url: redisUrl }, 'worker') });
  const room = `bench-room-${Date.now()}`;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const redisCpu = async () => {
    const info = await redis.info('cpu');
    const field = (name: string) => Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    return field('used_cpu_user') + field('used_cpu_sys');
  };
  try {
    for (let start = 0; start < members; start += 1000) {
      const userIds = Array.from({ length: Math.min(1000, members - start) }, (_, i) => `fan-${start + i}`);
      const res = await http.request('POST', `/v1/rooms/${room}/members`, { userIds }, BENCH_KEYS.API_KEY);
      if (res.status !== 200) throw new Error(`adding members: ${res.status} ${res.body}`);
    }
    const jobMs: number[] = [];
    const endToEndMs: number[] = [];
    let cpuBefore = Number.NaN;
    for (let run = 0; run <= runs; run += 1) {
      if (run === 1) cpuBefore = await redisCpu();
      const sent = Date.now();
      const res = await http.request('POST', `/v1/rooms/${room}/messages`, { data: { run } }, BENCH_KEYS.API_KEY);
      if (res.status !== 202) throw new Error(`room message: ${res.status} ${res.body}`);
      const { jobId } = JSON.parse(res.body) as { jobId: string };
      const deadline = Date.now() + 120_000;
      for (;;) {
        const job = await queue.getJob(jobId);
        const state = job === undefined ? 'unknown' : await job.getState();
        if (state === 'failed') throw new Error(`fan-out job ${jobId} failed: ${job?.failedReason}`);
        if (job !== undefined && state === 'completed' && job.finishedOn && job.processedOn) {
          // The first run warms the JIT and the connections; it is not counted.
          if (run > 0) {
            jobMs.push(job.finishedOn - job.processedOn);
            endToEndMs.push(job.finishedOn - sent);
          }
          break;
        }
        if (Date.now() > deadline) throw new Error(`fan-out job ${jobId} still ${state} after 120 s`);
        await sleep(20);
      }
    }
    const cpuSeconds = (await redisCpu()) - cpuBefore;
    const job = median(jobMs);
    return {
      bench: 'fanout',
      members,
      runs,
      deliveriesPerSecond: round((members * 1000) / Math.max(1, job)),
      jobMs: job,
      endToEndMs: median(endToEndMs),
      redisCpuUsPerDelivery: round((cpuSeconds * 1e6) / (members * runs)),
    };
  } finally {
    http.close();
    redis.disconnect();
    await queue.close();
  }
}

async function main(): Promise<void> {
  let redis: TestRedis | undefined;
  let server: BenchServer | undefined;
  try {
    redis = await startRedis();
    server = await startServer(redis.url);
    console.log(JSON.stringify(await fanoutBench(server.url, redis.url)));
  } finally {
    await server?.stop();
    await redis?.kill('SIGTERM');
    await redis?.stop();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
