import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createHousekeeper } from '../../src/queue/housekeeping.js';
import { createKeys, enqueuedAtOf } from '../../src/queue/keys.js';
import { HOUSEKEEPING_SCHEDULER } from '../../src/workers/housekeeping-worker.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startApp } from '../helpers/start-app.js';
import { startNodeForTest, useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

// A daily interval: the first sweep is a day after start, so nothing but the sweeps a test
// triggers itself can drop messages, and what a test counts cannot change under it.
const DAY_MS = 86_400_000;
const node = useNode({ DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000, HOUSEKEEPING_INTERVAL_MS: DAY_MS });

/** Waits until every message with a TTL of these ids is past it, on the clock the in-process node reads too. */
const pastTtl = (ids: string[], ttlMs: number) =>
  waitUntil(() => ids.every((id) => Date.now() > enqueuedAtOf(id) + ttlMs), 'the messages are past their ttlMs');

describe('housekeeping', () => {
  it('runs as one BullMQ job scheduler at the configured interval', async () => {
    const schedulers = await node.app.queue('housekeeping').getJobSchedulers();
    expect(schedulers).toEqual([expect.objectContaining({ key: HOUSEKEEPING_SCHEDULER, every: DAY_MS })]);
  });

  it('drops messages past their TTL from mailboxes nobody drains, and reports its last run in /metrics', async () => {
    const { app } = node;
    const startedAt = Date.now() / 1000;
    const expiring: string[] = [];
    for (let i = 0; i < 3; i += 1) expiring.push(await app.enqueue('away', { short: i }, { ttlMs: 200 }));
    const keep = await app.enqueue('away', { keep: true });
    expiring.push(await app.enqueue('away-too', 'brief', { ttlMs: 200 }));
    // No sweep has run, and nobody is connected: all of them are there.
    expect((await app.counts('away')).waiting).toBe(4);
    expect((await app.counts('away-too')).waiting).toBe(1);
    expect(await app.metric('postbox_housekeeping_last_run_seconds')).toBe(0);

    // One sweep, through the node's BullMQ worker as a scheduled one would run, once they are due.
    await pastTtl(expiring, 200);
    await app.queue('housekeeping').add('sweep', {});
    await waitUntil(async () => ((await app.metric('postbox_housekeeping_last_run_seconds')) ?? 0) > startedAt, 'the sweep ran');
    expect((await app.counts('away')).waiting).toBe(1);
    expect((await app.counts('away-too')).waiting).toBe(0);
    expect(await app.metric('postbox_messages_expired_total')).toBe(4);
    expect(await app.metric('postbox_housekeeping_last_expired')).toBe(4);

    // The user comes back: only the message without TTL arrives (the others are gone from the mailbox).
    const sse = await app.openStream('away');
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe(keep);
    sse.close();
  });

  it('drops expired messages in bounded steps, found by their expiry, and deletes empty idle mailboxes', async () => {
    // Its own prefix: only the sweep below touches these mailboxes.
    const other = await startNodeForTest(node.redis, { KEY_PREFIX: 'hk2', HOUSEKEEPING_INTERVAL_MS: DAY_MS });
    const expiring: string[] = [];
    for (let i = 0; i < 5; i += 1) expiring.push(await other.enqueue('long', i, { ttlMs: 100 }));
    await other.enqueue('long', 'stays');
    await other.enqueue('long', 'stays too');
    expiring.push(await other.enqueue('emptied', 'brief', { ttlMs: 100 }));
    await other.enqueue('no-ttl', 'lives');
    await pastTtl(expiring, 100);
    const client = node.redis.client();
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
    const sse = await other.openStream('emptied');
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe(id);
  });

  it('warns at start-up when Redis may evict keys (maxmemory-policy other than noeviction)', async () => {
    const client = node.redis.client();
    const { logger, lines } = captureLogs('info');
    const start = async () => (await startApp(node.redis.url, { KEY_PREFIX: 'evict' }, { logger })).close();
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await start();
    } finally {
      await client.config('SET', 'maxmemory-policy', 'noeviction');
    }
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, policy: 'allkeys-lru' }));
    lines.length = 0;
    await start();
    expect(lines.filter((l) => JSON.stringify(l).includes('maxmemory-policy'))).toEqual([]);
  });
});
