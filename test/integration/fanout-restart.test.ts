import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bullPrefix } from '../../src/queue/job-queues.js';
import { bullConnection } from '../../src/queue/redis.js';
import { sleep } from '../helpers/read-sse.js';
import { spawnServer, TEST_KEYS, type ServerProcess } from '../helpers/spawn-server.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

const MEMBERS = 20_000;

let redis: TestRedis;
let server: ServerProcess | undefined;
let second: TestApp | undefined;
let queue: Queue;

beforeAll(async () => {
  redis = await startRedis();
  queue = new Queue('fanout', { prefix: bullPrefix('pb'), connection: bullConnection({ url: redis.url }, 'worker') });
});
afterAll(async () => {
  await server?.kill();
  await second?.close();
  await queue?.close();
  await redis?.stop();
});

const memberId = (i: number, prefix = 'm') => `${prefix}${String(i).padStart(5, '0')}`;

describe('room fan-out across node restarts', () => {
  it('completes after its node is SIGKILLed mid-way, with every member reached exactly once', async () => {
    // Small chunks so the fan-out takes long enough to be caught half done; a short lock so
    // the next node takes the stalled job over quickly.
    const env = { REDIS_URL: redis.url, FANOUT_CHUNK_SIZE: 50, JOB_LOCK_MS: 1000, DRAIN_INTERVAL_MS: 50 };
    server = await spawnServer(env);
    const call = (path: string, body: unknown) =>
      fetch(server!.url + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (let start = 0; start < MEMBERS; start += 1000) {
      const userIds = Array.from({ length: 1000 }, (_, i) => memberId(start + i));
      expect((await call('/v1/rooms/big-room/members', { userIds })).status).toBe(200);
    }

    const res = await call('/v1/rooms/big-room/messages', { event: 'news', data: { n: 1 } });
    expect(res.status).toBe(202);
    const { jobId, members } = (await res.json()) as { jobId: string; members: number };
    expect(members).toBe(MEMBERS);

    // Kill the node once the job has reached some members but not all.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const job = await queue.getJob(jobId);
      const progress = Number(job?.progress ?? 0);
      if (progress >= 5) break;
      if (Date.now() > deadline) throw new Error(`fan-out made no progress:\n${server.output()}`);
      await sleep(10);
    }
    await server.kill('SIGKILL');
    server = undefined;
    const client = redis.client();
    const lengthsAt = async () => {
      const pipeline = client.pipeline();
      for (let i = 0; i < MEMBERS; i += 1) pipeline.xlen(`pb:{${memberId(i)}}:m`);
      return ((await pipeline.exec()) ?? []).map(([, n]) => Number(n));
    };
    const atKill = await lengthsAt();
    const reached = atKill.filter((n) => n === 1).length;
    expect(reached).toBeGreaterThan(0);
    expect(reached).toBeLessThan(MEMBERS);
    expect(await (await queue.getJob(jobId))!.getState()).toBe('active');

    // Another node takes the stalled job over and resumes at its cursor.
    second = await startApp(redis.url, { JOB_LOCK_MS: 1000, FANOUT_CHUNK_SIZE: 500 });
    const finish = Date.now() + 30_000;
    for (;;) {
      const state = await (await queue.getJob(jobId))!.getState();
      if (state === 'completed') break;
      if (state === 'failed' || Date.now() > finish) throw new Error(`fan-out job ended ${state}`);
      await sleep(100);
    }
    const job = (await queue.getJob(jobId))!;
    expect(job.returnvalue).toEqual({ delivered: MEMBERS, skipped: 0, expired: false });
    expect(job.progress).toBe(100);

    const lengths = await lengthsAt();
    const missing = lengths.flatMap((n, i) => (n === 0 ? [memberId(i)] : []));
    const duplicated = lengths.flatMap((n, i) => (n > 1 ? [memberId(i)] : []));
    expect(missing).toEqual([]);
    expect(duplicated).toEqual([]);
    const [entry] = await client.xrange(`pb:{${memberId(MEMBERS - 1)}}:m`, '-', '+');
    expect(entry![1]).toEqual(['e', 'news', 'd', '{"n":1}']);
    await second.close();
    second = undefined;
  }, 90_000);

  it('hands a fan-out under way back at its cursor on graceful shutdown; the next node finishes it', async () => {
    const first = await startApp(redis.url, { FANOUT_CHUNK_SIZE: 50, JOB_LOCK_MS: 30_000 });
    let firstClosed = false;
    try {
      for (let start = 0; start < MEMBERS; start += 1000) {
        const userIds = Array.from({ length: 1000 }, (_, i) => memberId(start + i, 'g'));
        await first.produce('/v1/rooms/graceful-room/members', { userIds });
      }
      const res = await first.produce('/v1/rooms/graceful-room/messages', { data: 'bye' });
      const { jobId } = (await res.json()) as { jobId: string };
      while (Number((await queue.getJob(jobId))?.progress ?? 0) < 5) await sleep(10);
      await first.close();
      firstClosed = true;
      // Back in the queue at once, not left active until its 30 s lock expires.
      const job = (await queue.getJob(jobId))!;
      expect(await job.getState()).toBe('waiting');
      expect(Number(job.progress)).toBeLessThan(100);

      second = await startApp(redis.url, { FANOUT_CHUNK_SIZE: 500 });
      const finish = Date.now() + 30_000;
      while ((await (await queue.getJob(jobId))!.getState()) !== 'completed') {
        if (Date.now() > finish) throw new Error('fan-out not completed after the graceful hand-over');
        await sleep(100);
      }
      expect((await queue.getJob(jobId))!.returnvalue).toEqual({ delivered: MEMBERS, skipped: 0, expired: false });
      const client = redis.client();
      const pipeline = client.pipeline();
      for (let i = 0; i < MEMBERS; i += 1) pipeline.xlen(`pb:{${memberId(i, 'g')}}:m`);
      const lengths = ((await pipeline.exec()) ?? []).map(([, n]) => Number(n));
      expect(lengths.filter((n) => n !== 1)).toEqual([]);
    } finally {
      if (!firstClosed) await first.close();
    }
  }, 90_000);
});
