import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueuedAtOf } from '../../src/queue/keys.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// Messages past their TTL that housekeeping has not swept yet will never be delivered: the admin
// counts them apart (`expired`), never as waiting or in flight, and "oldest" skips them.
const TTL_MS = 300;
let redis: TestRedis;
let app: TestApp;
const streams: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  // No sweep during the test (its first run finds nothing), no redelivery of what is in flight.
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 60_000, HOUSEKEEPING_INTERVAL_MS: 86_400_000 });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await app?.close();
  await redis?.stop();
});

interface Row {
  userId: string;
  waiting: number;
  inflight: number;
  dead: number;
  oldestAgeMs: number | null;
}
interface View extends Row {
  expired: number;
  oldestWaiting: Array<{ id: string }>;
  inflightMessages: Array<{ id: string }>;
}

const json = async <T>(res: Response): Promise<T> => {
  expect(res.status).toBe(200);
  return (await res.json()) as T;
};
const view = (userId: string) => app.admin(`/admin/queues/${userId}`).then((r) => json<View>(r));
const rows = () => app.admin('/admin/queues?sort=backlog&limit=1000').then((r) => json<{ queues: Row[] }>(r));

/** Until the wall clock passes the expiry of a message enqueued with TTL_MS (its id carries the time). */
async function pastExpiry(id: string): Promise<void> {
  while (Date.now() <= enqueuedAtOf(id) + TTL_MS) await sleep(25);
}

async function stream(userId: string): Promise<{ sse: SseReader; token: string }> {
  const token = await app.token(userId);
  const sse = await openSse(app.streamUrl(token));
  streams.push(sse);
  return { sse, token };
}

describe('admin counts and messages past their TTL', () => {
  it('counts expired waiting messages apart, and the oldest waiting is the oldest alive', async () => {
    const expiring = [];
    for (let i = 0; i < 3; i += 1) expiring.push(await app.enqueue('stale', { i }, { ttlMs: TTL_MS }));
    const alive = await app.enqueue('stale', { alive: true });
    await pastExpiry(expiring[2]!);

    const before = Date.now();
    const detail = await view('stale');
    const row = (await rows()).queues.find((q) => q.userId === 'stale');
    const after = Date.now();
    expect(detail).toMatchObject({ waiting: 1, inflight: 0, expired: 3, dead: 0 });
    expect(detail.oldestWaiting.map((m) => m.id)).toEqual([alive]);
    expect(row).toMatchObject({ waiting: 1, inflight: 0, dead: 0 });
    // The age of the message alive, not of the first expired one.
    expect(row!.oldestAgeMs).toBeGreaterThanOrEqual(before - enqueuedAtOf(alive) - 5);
    expect(row!.oldestAgeMs).toBeLessThanOrEqual(after - enqueuedAtOf(alive));

    const { totals } = await json<{ totals: { waiting: number; expired: number } }>(await app.admin('/admin/stats'));
    expect(totals).toMatchObject({ waiting: 1, expired: 3 });
  });

  it('an expired message in flight is neither in flight nor listed; acked ones in the expiries are not counted', async () => {
    const held = await stream('held');
    const heldId = await app.enqueue('held', { held: true }, { ttlMs: TTL_MS });
    await held.sse.waitFor(1); // written, never acked

    const done = await stream('acked');
    const ackedId = await app.enqueue('acked', { acked: true }, { ttlMs: TTL_MS });
    await done.sse.waitFor(1);
    expect(await (await app.ack(done.token, [ackedId])).json()).toEqual({ acked: 1 });
    await pastExpiry(heldId);
    await pastExpiry(ackedId);

    const heldView = await view('held');
    expect(heldView).toMatchObject({ waiting: 0, inflight: 0, expired: 1 });
    expect(heldView.inflightMessages).toEqual([]);
    // Nothing that will be delivered and no dead letters: not a backlog.
    const listed = (await rows()).queues.map((q) => q.userId);
    expect(listed).not.toContain('held');
    expect(listed).not.toContain('acked');
    // Its mailbox is still there, empty: the acked id left in the expiries is no expired message.
    expect(await view('acked')).toMatchObject({ waiting: 0, inflight: 0, expired: 0 });
  });
});
