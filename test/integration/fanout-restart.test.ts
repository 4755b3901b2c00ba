import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bullPrefix } from '../../src/queue/job-queues.js';
import { bullConnection } from '../../src/queue/redis.js';
import { spawnServer, type ServerProcess } from '../helpers/spawn-server.js';
import { TEST_KEYS } from '../helpers/test-keys.js';
import { startNodeForTest, useRedis } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const MEMBERS = 20_000;

// The first node of the first test is a process of its own, to be SIGKILLed.
const redis = useRedis();
let server: ServerProcess | undefined;
let queue: Queue;

beforeAll(() => {
  queue = new Queue('fanout', { prefix: bullPrefix('pb'), connection: bullConnection({ url: redis.url }, 'worker') });
});
afterAll(async () => {
  await server?.kill();
  await queue?.close();
});

/** Waits until the fan-out job completes; throws at once if it fails. */
async function completed(jobId: string, what: string): Promise<void> {
  await waitUntil(
    async () => {
      const state = await (await queue.getJob(jobId))!.getState();
      if (state === 'failed') throw new Error(`fan-out job ${jobId} failed`);
      return state === 'completed';
    },
    what,
    { timeoutMs: 120_000, intervalMs: 100 },
  );
}

/** How far the fan-out job has got, in percent. */
const progressOf = async (jobId: string) => Number((await queue.getJob(jobId))?.progress ?? 0);

const memberId = (i: number, prefix = 'm') => `${prefix}${String(i).padStart(5, '0')}`;

// 20,000 members, twice, and a node started as a process: minutes on a loaded machine.
describe('room fan-out across node restarts', { timeout: 300_000 }, () => {
  it('completes after its node is SIGKILLed mid-way, with every member reached exactly once', async () => {
    // Small chunks (1000 round trips) so the fan-out is caught half done with a wide margin; a
    // short lock so the next node takes the stalled job over quickly.
    const env = { REDIS_URL: redis.url, FANOUT_CHUNK_SIZE: 20, JOB_LOCK_MS: 1000, DRAIN_INTERVAL_MS: 50 };
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

    // Kill the node once the job has reached some members but not all: stop it first (SIGSTOP,
    // at once), so that what is read next cannot move, then kill it.
    await waitUntil(async () => (await progressOf(jobId)) >= 5, 'the fan-out makes progress', {
      intervalMs: 10,
    });
    server.child.kill('SIGSTOP');
    expect(await progressOf(jobId), 'the fan-out was caught before it finished').toBeLessThan(100);
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
    const second = await startNodeForTest(redis, { JOB_LOCK_MS: 1000, FANOUT_CHUNK_SIZE: 500 });
    await completed(jobId, 'the next node completes the fan-out');
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
  });

  it('hands a fan-out under way back at its cursor on graceful shutdown; the next node finishes it', async () => {
    // Small chunks, as above, so the close lands while the fan-out is under way.
    const first = await startNodeForTest(redis, { FANOUT_CHUNK_SIZE: 20, JOB_LOCK_MS: 30_000 });
    for (let start = 0; start < MEMBERS; start += 1000) {
      const userIds = Array.from({ length: 1000 }, (_, i) => memberId(start + i, 'g'));
      await first.produce('/v1/rooms/graceful-room/members', { userIds });
    }
    const res = await first.produce('/v1/rooms/graceful-room/messages', { data: 'bye' });
    const { jobId } = (await res.json()) as { jobId: string };
    await waitUntil(async () => (await progressOf(jobId)) >= 5, 'the fan-out makes progress', { intervalMs: 10 });
    await first.close();
    // Back in the queue at once, not left active until its 30 s lock expires.
    const job = (await queue.getJob(jobId))!;
    expect(await job.getState()).toBe('waiting');
    expect(Number(job.progress)).toBeLessThan(100);

    await startNodeForTest(redis, { FANOUT_CHUNK_SIZE: 500 });
    await completed(jobId, 'the next node completes the fan-out after the graceful hand-over');
    expect((await queue.getJob(jobId))!.returnvalue).toEqual({ delivered: MEMBERS, skipped: 0, expired: false });
    const client = redis.client();
    const pipeline = client.pipeline();
    for (let i = 0; i < MEMBERS; i += 1) pipeline.xlen(`pb:{${memberId(i, 'g')}}:m`);
    const lengths = ((await pipeline.exec()) ?? []).map(([, n]) => Number(n));
    expect(lengths.filter((n) => n !== 1)).toEqual([]);
  });
});
