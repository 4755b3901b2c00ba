import { describe, expect, it } from 'vitest';
import { enqueuedAtOf } from '../../src/queue/keys.js';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({ DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000 }, { logs: 'error' });

interface Scheduled {
  scheduledId: string;
  userId: string;
  deliverAt: string;
}

const waiting = async (userId: string) => (await node.app.counts(userId)).waiting;

/** The data of a user's waiting messages, oldest first. */
async function waitingData(userId: string): Promise<unknown[]> {
  const res = await node.app.admin(`/admin/queues/${userId}`);
  if (res.status === 404) return [];
  return ((await res.json()) as { oldestWaiting: Array<{ data: unknown }> }).oldestWaiting.map((m) => m.data);
}

describe('scheduled delivery', () => {
  it('holds a delayMs message until it is due, then delivers it with an event id of that time', async () => {
    const { app } = node;
    const sse = await app.openStream('patient');
    const before = await app.enqueue('patient', 'now');
    const res = await app.produce('/v1/users/patient/messages', { data: { later: true }, event: 'reminder', delayMs: 1000 });
    expect(res.status).toBe(202);
    const body = (await res.json()) as Scheduled;
    expect(body).toMatchObject({ userId: 'patient', scheduledId: expect.stringMatching(/^[A-Za-z0-9_-]+$/) });
    const deliverAt = Date.parse(body.deliverAt);
    expect(deliverAt).toBeGreaterThan(Date.now() + 500);
    const after = await app.enqueue('patient', 'also now');

    const events = await sse.waitFor(3);
    expect(events.slice(0, 2).map((e) => e.id)).toEqual([before, after]);
    const due = events[2]!;
    expect(due.event).toBe('reminder');
    expect(JSON.parse(due.data)).toEqual({ later: true });
    // Not early: it entered the mailbox when due, so its id orders after everything enqueued
    // before then, and it arrived after that time (this in-process node reads the same clock).
    expect(enqueuedAtOf(due.id!)).toBeGreaterThanOrEqual(deliverAt);
    expect(sse.arrivals[2]).toBeGreaterThanOrEqual(deliverAt);
    sse.close();
  });

  it('accepts deliverAt as ISO time or epoch ms and delivers to a user who connects later', async () => {
    const { app } = node;
    const at = Date.now() + 600;
    const iso = await app.produce('/v1/users/later-user/messages', { data: 'iso', deliverAt: new Date(at).toISOString() });
    const epoch = await app.produce('/v1/users/later-user/messages', { data: 'epoch', deliverAt: at + 100 });
    expect(iso.status).toBe(202);
    expect(epoch.status).toBe(202);
    expect(((await iso.json()) as Scheduled).deliverAt).toBe(new Date(at).toISOString());
    expect(((await epoch.json()) as Scheduled).deliverAt).toBe(new Date(at + 100).toISOString());
    expect(await waiting('later-user')).toBe(0);
    await waitUntil(async () => (await waiting('later-user')) === 2, 'both are due and in the mailbox');
    const sse = await app.openStream('later-user');
    const events = await sse.waitFor(2);
    expect(events.map((e) => e.data)).toEqual(['"iso"', '"epoch"']);
    sse.close();
  });

  it('delivers at once when deliverAt is in the past', async () => {
    const { app } = node;
    const res = await app.produce('/v1/users/past-user/messages', { data: 1, deliverAt: Date.now() - 60_000 });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ id: expect.any(String), userId: 'past-user' });
    expect(await waiting('past-user')).toBe(1);
  });

  it('cancels a pending scheduled message; unknown, foreign or repeated ids are 404', async () => {
    const { app } = node;
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
    // Gone from the queue, so nothing can deliver it; and a later message, due after it would
    // have been, arrives alone.
    expect(await app.queue('scheduled').getJob(scheduledId)).toBeUndefined();
    await app.produce('/v1/users/canceller/messages', { data: 'later', delayMs: 700 });
    await waitUntil(async () => (await waiting('canceller')) > 0, 'the later message is due');
    expect(await waitingData('canceller')).toEqual(['later']);
  });

  it('schedules messages of a batch and enqueues the others at once', async () => {
    const { app } = node;
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
    await waitUntil(async () => (await waiting('batch-b')) === 2, 'both scheduled messages are due');
    expect((await waitingData('batch-b')).sort()).toEqual(['later', 'soon']);
  });

  it('schedules once per idempotency key and delivers once', async () => {
    const { app } = node;
    const send = () => app.produce('/v1/users/keyed/messages', { data: 'once', key: 'order-7', delayMs: 400 });
    const first = (await (await send()).json()) as Scheduled;
    const second = (await (await send()).json()) as Scheduled;
    expect(second.scheduledId).toBe(first.scheduledId);
    expect(second.deliverAt).toBe(first.deliverAt);
    // A message due after the keyed one: once it is in, the keyed one has been delivered as often as it will be.
    await app.produce('/v1/users/keyed/messages', { data: 'after', delayMs: 400 });
    await waitUntil(async () => (await waitingData('keyed')).includes('after'), 'the later message is due');
    expect((await waitingData('keyed')).sort()).toEqual(['after', 'once']);
  });

  it('rejects bad schedules with 400 and schedules nothing', async () => {
    const { app } = node;
    // Jobs of other tests may fall due meanwhile; only this user's count.
    const queue = app.queue('scheduled');
    const scheduledFor = async (userId: string) =>
      (await queue.getJobs(['delayed', 'waiting', 'active'])).filter((job) => (job.data as { userId?: string }).userId === userId);
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
    expect(await scheduledFor('bad-schedule')).toEqual([]);
    expect(await waiting('bad-schedule')).toBe(0);
  });

  it('answers 503 at once when Redis is down, and schedules again once it is back', async () => {
    const { app } = node;
    await node.redis.kill();
    try {
      const res = await app.produce('/v1/users/outage/messages', { data: 1, delayMs: 200 });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_REDIS_UNAVAILABLE');
      // At once, not after the command timeout: the logged cause says which, without a clock.
      const failure = node.logs.findLast((l) => l.path === '/v1/users/outage/messages');
      expect(failure, 'the 503 is logged with its cause').toBeDefined();
      expect((failure!.err as { message: string }).message).not.toMatch(/timed out/i);
    } finally {
      await node.redis.restart();
    }
    // Each try that answers 503 schedules nothing; the first 202 ends the tries: one message.
    await waitUntil(
      async () => (await app.produce('/v1/users/outage/messages', { data: 2, delayMs: 200 })).status === 202,
      'scheduling works again',
      { intervalMs: 200 },
    );
    await waitUntil(async () => (await waiting('outage')) === 1, 'the message is due');
    expect(await waitingData('outage')).toEqual([2]);
  });
});
