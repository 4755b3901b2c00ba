import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueuedAtOf } from '../../src/queue/keys.js';
import { openSse, sleep } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000 });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});


interface Scheduled {
  scheduledId: string;
  userId: string;
  deliverAt: string;
}

async function waiting(userId: string): Promise<number> {
  const res = await app.admin(`/admin/queues/${userId}`);
  if (res.status === 404) return 0;
  return ((await res.json()) as { waiting: number }).waiting;
}

describe('scheduled delivery', () => {
  it('holds a delayMs message until it is due, then delivers it with an event id of that time', async () => {
    const sse = await openSse(app.streamUrl(await app.token('patient')));
    const before = await app.enqueue('patient', 'now');
    const res = await app.produce('/v1/users/patient/messages', { data: { later: true }, event: 'reminder', delayMs: 1000 });
    expect(res.status).toBe(202);
    const body = (await res.json()) as Scheduled;
    expect(body).toMatchObject({ userId: 'patient', scheduledId: expect.stringMatching(/^[A-Za-z0-9_-]+$/) });
    const deliverAt = Date.parse(body.deliverAt);
    expect(deliverAt).toBeGreaterThan(Date.now() + 500);
    const after = await app.enqueue('patient', 'also now');

    await sse.waitFor(2);
    await sleep(deliverAt - Date.now() - 250);
    // Not early: only the two immediate messages so far.
    expect(sse.events.map((e) => e.id)).toEqual([before, after]);

    const events = await sse.waitFor(3, 5000);
    const due = events[2]!;
    expect(due.event).toBe('reminder');
    expect(JSON.parse(due.data)).toEqual({ later: true });
    // It entered the mailbox when due, so its id orders after everything enqueued before then.
    expect(enqueuedAtOf(due.id!)).toBeGreaterThanOrEqual(deliverAt);
    sse.close();
  });

  it('accepts deliverAt as ISO time or epoch ms and delivers to a user who connects later', async () => {
    const at = Date.now() + 600;
    const iso = await app.produce('/v1/users/later-user/messages', { data: 'iso', deliverAt: new Date(at).toISOString() });
    const epoch = await app.produce('/v1/users/later-user/messages', { data: 'epoch', deliverAt: at + 100 });
    expect(iso.status).toBe(202);
    expect(epoch.status).toBe(202);
    expect(((await iso.json()) as Scheduled).deliverAt).toBe(new Date(at).toISOString());
    expect(((await epoch.json()) as Scheduled).deliverAt).toBe(new Date(at + 100).toISOString());
    expect(await waiting('later-user')).toBe(0);
    await sleep(1500);
    const sse = await openSse(app.streamUrl(await app.token('later-user')));
    const events = await sse.waitFor(2);
    expect(events.map((e) => e.data)).toEqual(['"iso"', '"epoch"']);
    sse.close();
  });

  it('delivers at once when deliverAt is in the past', async () => {
    const res = await app.produce('/v1/users/past-user/messages', { data: 1, deliverAt: Date.now() - 60_000 });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ id: expect.any(String), userId: 'past-user' });
    expect(await waiting('past-user')).toBe(1);
  });

  it('cancels a pending scheduled message; unknown, foreign or repeated ids are 404', async () => {
    const res = await app.produce('/v1/users/canceller/messages', { data: 'never', delayMs: 700 });
    const { scheduledId } = (await res.json()) as Scheduled;
    expect((await app.call('DELETE', `/v1/users/someone-else/scheduled/${scheduledId}`)).status).toBe(404);
    const cancelled = await app.call('DELETE', `/v1/users/canceller/scheduled/${scheduledId}`);
    expect(cancelled.status).toBe(204);
    const again = await app.call('DELETE', `/v1/users/canceller/scheduled/${scheduledId}`);
    expect(again.status).toBe(404);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_SCHEDULED_NOT_FOUND');
    expect((await app.call('DELETE', '/v1/users/canceller/scheduled/s-no-such-id')).status).toBe(404);
    expect((await app.call('DELETE', '/v1/users/canceller/scheduled/bad%20id')).status).toBe(404);
    await sleep(1200);
    expect(await waiting('canceller')).toBe(0);
  });

  it('schedules messages of a batch and enqueues the others at once', async () => {
    const res = await app.produce('/v1/messages', {
      messages: [
        { userId: 'batch-a', data: 'now' },
        { userId: 'batch-b', data: 'soon', delayMs: 500 },
      ],
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { ids: Array<string | null>; scheduled: Array<Scheduled & { index: number }> };
    expect(body.ids[0]).toEqual(expect.any(String));
    expect(body.ids[1]).toBeNull();
    expect(body.scheduled).toEqual([
      { index: 1, scheduledId: expect.any(String), userId: 'batch-b', deliverAt: expect.any(String) },
    ]);
    expect(await waiting('batch-b')).toBe(0);
    const only = await app.produce('/v1/messages', { messages: [{ userId: 'batch-b', data: 'later', delayMs: 300 }] });
    expect(only.status).toBe(202);
    await sleep(1200);
    expect(await waiting('batch-b')).toBe(2);
  });

  it('schedules once per idempotency key and delivers once', async () => {
    const send = () => app.produce('/v1/users/keyed/messages', { data: 'once', key: 'order-7', delayMs: 400 });
    const first = (await (await send()).json()) as Scheduled;
    const second = (await (await send()).json()) as Scheduled;
    expect(second.scheduledId).toBe(first.scheduledId);
    expect(second.deliverAt).toBe(first.deliverAt);
    await sleep(1200);
    expect(await waiting('keyed')).toBe(1);
  });

  it('rejects bad schedules with 400 and schedules nothing', async () => {
    const queue = app.node.queues.find((q) => q.name === 'scheduled')!;
    const delayedBefore = await queue.getDelayedCount();
    const cases: Array<[unknown, RegExp]> = [
      [{ data: 1, deliverAt: Date.now() + 366 * 86_400_000 }, /deliverAt: at most a year ahead/],
      [{ data: 1, deliverAt: new Date(Date.now() + 400 * 86_400_000).toISOString() }, /at most a year ahead/],
      [{ data: 1, delayMs: 366 * 86_400_000 }, /delayMs/],
      [{ data: 1, delayMs: 100, deliverAt: Date.now() + 1000 }, /not both/],
      [{ data: 1, deliverAt: 'tomorrow' }, /deliverAt/],
      [{ data: 1, delayMs: -5 }, /delayMs/],
    ];
    for (const [body, message] of cases) {
      const res = await app.produce('/v1/users/bad-schedule/messages', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe('PB_ERR_VALIDATION');
      expect(error.message).toMatch(message);
    }
    const batch = await app.produce('/v1/messages', {
      messages: [
        { userId: 'bad-schedule', data: 1, delayMs: 100 },
        { userId: 'bad-schedule', data: 2, deliverAt: Date.now() + 500 * 86_400_000 },
      ],
    });
    expect(batch.status).toBe(400);
    expect(((await batch.json()) as { error: { message: string } }).error.message).toMatch(/messages\.1\.deliverAt/);
    expect(await queue.getDelayedCount()).toBe(delayedBefore);
    expect(await waiting('bad-schedule')).toBe(0);
  });

  it('answers 503 at once when Redis is down, and schedules again once it is back', async () => {
    await redis.kill();
    try {
      const started = Date.now();
      const res = await app.produce('/v1/users/outage/messages', { data: 1, delayMs: 200 });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_REDIS_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await redis.restart();
    }
    let status = 0;
    for (let i = 0; i < 50 && status !== 202; i += 1) {
      await sleep(200);
      status = (await app.produce('/v1/users/outage/messages', { data: 2, delayMs: 200 })).status;
    }
    expect(status).toBe(202);
    await sleep(1000);
    expect(await waiting('outage')).toBe(1);
  });
});
