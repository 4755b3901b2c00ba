import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { systemClock } from '../../src/clock.js';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { createHousekeeper } from '../../src/queue/housekeeping.js';
import { createKeys } from '../../src/queue/keys.js';
import { openSse, sleep } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000, HOUSEKEEPING_INTERVAL_MS: 300 });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

/** Entries stored in the user's mailbox, expired or not (the admin's counts leave expired ones out at once). */
let plain: ReturnType<TestRedis['client']> | undefined;
async function stored(userId: string): Promise<number> {
  plain ??= redis.client();
  return plain.xlen(createKeys('pb').mailbox(userId));
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

describe('housekeeping', () => {
  it('drops messages past their TTL from mailboxes nobody drains, and reports its last run in /metrics', async () => {
    const startedAt = Date.now() / 1000;
    for (let i = 0; i < 3; i += 1) await app.enqueue('away', { short: i }, { ttlMs: 200 });
    const keep = await app.enqueue('away', { keep: true });
    await app.enqueue('away-too', 'brief', { ttlMs: 200 });
    // All four were stored (enqueue answered each with an id); housekeeping may already be at work.

    // Nobody is connected, so only housekeeping can drop them.
    const deadline = Date.now() + 10_000;
    while ((await stored('away')) > 1 || (await stored('away-too')) > 0) {
      if (Date.now() > deadline) throw new Error('expired messages still in the mailbox after 10 s');
      await sleep(100);
    }

    const text = await (await fetch(`${app.url}/metrics`)).text();
    expect(metric(text, 'postbox_housekeeping_last_run_seconds')).toBeGreaterThan(startedAt);
    expect(metric(text, 'postbox_messages_expired_total')).toBeGreaterThanOrEqual(4);

    // The user comes back: only the message without TTL arrives.
    const sse = await openSse(`${app.url}/v1/stream?token=${await app.token('away')}`);
    const [event] = await sse.waitFor(1);
    await sleep(300);
    expect(sse.events).toHaveLength(1);
    expect(event!.id).toBe(keep);
    sse.close();
  });

  it('runs as one BullMQ job scheduler at the configured interval', async () => {
    const queue = app.node.queues.find((q) => q.name === 'housekeeping')!;
    const schedulers = await queue.getJobSchedulers();
    expect(schedulers).toEqual([expect.objectContaining({ key: 'housekeeping', every: 300 })]);
  });

  it('drops expired messages in bounded steps, found by their expiry, and deletes empty idle mailboxes', async () => {
    // Its own prefix and a daily interval: only the sweep below touches these mailboxes.
    const other = await startApp(redis.url, { KEY_PREFIX: 'hk2', HOUSEKEEPING_INTERVAL_MS: 86_400_000 });
    try {
      for (let i = 0; i < 5; i += 1) await other.enqueue('long', i, { ttlMs: 100 });
      await other.enqueue('long', 'stays');
      await other.enqueue('long', 'stays too');
      await other.enqueue('emptied', 'brief', { ttlMs: 100 });
      await other.enqueue('no-ttl', 'lives');
      await sleep(200);
      const client = redis.client();
      const keys = createKeys('hk2');
      // Only messages with a TTL are indexed by expiry; the sweep reads that, not the backlog.
      expect(await client.zcard(keys.expiries('long'))).toBe(5);
      expect(await client.exists(keys.expiries('no-ttl'))).toBe(0);
      const housekeeper = createHousekeeper({
        redis: client,
        keys,
        clock: systemClock,
        options: { entriesPerCall: 2, usersPerChunk: 1, emptyIdleMs: 1 },
      });
      const run = await housekeeper.sweep();
      expect(run).toMatchObject({ users: 3, expired: 6, deleted: 1 });
      expect(await housekeeper.lastRun()).toEqual(run);
      expect(await client.xlen(keys.mailbox('long'))).toBe(2);
      expect(await client.exists(keys.mailbox('emptied'))).toBe(0);
      expect(await client.exists(keys.expiries('long'), keys.expiries('emptied'))).toBe(0);
      expect(await client.xlen(keys.mailbox('no-ttl'))).toBe(1);
      expect(await client.zrange(keys.users(), 0, -1)).toEqual(['long', 'no-ttl']);

      // The next message recreates the mailbox, and it is delivered as usual.
      const id = await other.enqueue('emptied', 'back');
      const sse = await openSse(`${other.url}/v1/stream?token=${await other.token('emptied')}`);
      const [event] = await sse.waitFor(1);
      expect(event!.id).toBe(id);
      sse.close();
    } finally {
      await other.close();
    }
  });

  it('warns at start-up when Redis may evict keys (maxmemory-policy other than noeviction)', async () => {
    const client = redis.client();
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const start = async () => {
      const node = await createPostbox(testConfig({ KEY_PREFIX: 'evict' }), { redisUrl: redis.url, logger: pino(sink) });
      await node.close();
    };
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await start();
    } finally {
      await client.config('SET', 'maxmemory-policy', 'noeviction');
    }
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string; policy?: string });
    expect(warnings).toContainEqual(expect.objectContaining({ level: 40, policy: 'allkeys-lru' }));
    lines.length = 0;
    await start();
    expect(lines.filter((l) => l.includes('maxmemory-policy'))).toEqual([]);
  });
});
