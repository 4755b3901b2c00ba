import { describe, expect, it } from 'vitest';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({ DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000 });

interface ScheduleView {
  userId: string;
  name: string;
  every?: number;
  cron?: string;
  event: string;
  data: unknown;
  next: string | null;
}

describe('recurring schedules', () => {
  it('delivers every N ms until the schedule is deleted', async () => {
    const { app } = node;
    const token = await app.token('ticker');
    const sse = await app.openStream('ticker', { token });
    const before = Date.now();
    const res = await app.call('PUT', '/v1/users/ticker/schedules/clock', { every: 300, event: 'tick', data: { t: 'now' } });
    expect(res.status).toBe(201);
    const view = (await res.json()) as ScheduleView;
    expect(view).toMatchObject({ userId: 'ticker', name: 'clock', every: 300, event: 'tick', data: { t: 'now' } });
    // Not in the past: at most one period (300 ms, which BullMQ may align runs to) before the request.
    expect(Date.parse(view.next!)).toBeGreaterThanOrEqual(before - 300);

    const events = await sse.waitFor(3);
    expect(events.every((e) => e.event === 'tick' && e.data === '{"t":"now"}')).toBe(true);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    await app.ack(token, events.map((e) => e.id!));

    const list = (await (await app.call('GET', '/v1/users/ticker/schedules')).json()) as { schedules: ScheduleView[] };
    expect(list.schedules.map((s) => s.name)).toEqual(['clock']);

    expect((await app.call('DELETE', '/v1/users/ticker/schedules/clock')).status).toBe(204);
    // One iteration may already be due or running as the delete lands, no more: the next one is
    // gone with the scheduler. Once that one is done the queue holds no job at all (nothing else
    // is scheduled in this test), so nothing more can come, however long one waited.
    const queue = app.queue('scheduled');
    expect(await queue.getJobSchedulers()).toEqual([]);
    const left = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    expect(left.delayed).toBe(0);
    expect(left.waiting! + left.active! + left.prioritized!).toBeLessThanOrEqual(1);
    await waitUntil(
      async () => expect(await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized')).toEqual({
        waiting: 0,
        delayed: 0,
        active: 0,
        prioritized: 0,
      }),
      'the last iteration is done',
    );
    await waitUntil(async () => (await app.counts('ticker')).waiting === 0, 'the last tick is delivered');
    expect(((await (await app.call('GET', '/v1/users/ticker/schedules')).json()) as { schedules: unknown[] }).schedules).toEqual(
      [],
    );
    expect((await app.call('DELETE', '/v1/users/ticker/schedules/clock')).status).toBe(404);
    sse.close();
  });

  it('replaces a schedule on a second PUT (200), here with a cron with seconds', async () => {
    const { app } = node;
    // Once a year, on 1 January: nothing is due during the test.
    expect((await app.call('PUT', '/v1/users/cronner/schedules/beat', { cron: '0 0 1 1 *', data: 'yearly' })).status).toBe(201);
    const res = await app.call('PUT', '/v1/users/cronner/schedules/beat', { cron: '* * * * * *', data: 'each second' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ name: 'beat', cron: '* * * * * *', event: 'message', data: 'each second' });
    const list = (await (await app.call('GET', '/v1/users/cronner/schedules')).json()) as { schedules: ScheduleView[] };
    expect(list.schedules).toHaveLength(1);
    expect(list.schedules[0]).toMatchObject({ name: 'beat', cron: '* * * * * *' });
    expect(list.schedules[0]!.every).toBeUndefined();
    const sse = await app.openStream('cronner');
    const [event] = await sse.waitFor(1);
    expect(event!.data).toBe('"each second"');
    expect((await app.call('DELETE', '/v1/users/cronner/schedules/beat')).status).toBe(204);
    sse.close();
  });

  it('keeps users apart: the same name for two users is two schedules', async () => {
    const { app } = node;
    await app.call('PUT', '/v1/users/u-one/schedules/daily', { cron: '0 9 * * *', data: 1 });
    await app.call('PUT', '/v1/users/u:two/schedules/daily', { cron: '0 10 * * *', data: 2 });
    const one = (await (await app.call('GET', '/v1/users/u-one/schedules')).json()) as { schedules: ScheduleView[] };
    const two = (await (await app.call('GET', '/v1/users/u:two/schedules')).json()) as { schedules: ScheduleView[] };
    expect(one.schedules.map((s) => s.cron)).toEqual(['0 9 * * *']);
    expect(two.schedules.map((s) => s.cron)).toEqual(['0 10 * * *']);
    expect((await app.call('DELETE', '/v1/users/u-one/schedules/daily')).status).toBe(204);
    expect((await (await app.call('GET', '/v1/users/u:two/schedules')).json()) as unknown).toMatchObject({
      schedules: [{ name: 'daily' }],
    });
    expect((await app.call('DELETE', '/v1/users/u:two/schedules/daily')).status).toBe(204);
  });

  it('rejects bad schedules with 400 and creates nothing', async () => {
    const { app } = node;
    const cases: Array<[string, unknown, RegExp]> = [
      ['ok', { every: 50, data: 1 }, /every must be at least 100/],
      ['ok', { cron: 'every tuesday', data: 1 }, /cron/],
      ['ok', { cron: '61 * * * *', data: 1 }, /cron/],
      ['ok', { cron: '* * * * *', tz: 'Mars/Olympus', data: 1 }, /cron/],
      ['ok', { every: 1000, cron: '* * * * *', data: 1 }, /exactly one/],
      ['ok', { data: 1 }, /exactly one/],
      ['ok', { every: 1000 }, /data/],
      ['ok', { every: 1000, data: 1, event: 'bad event' }, /event/],
      ['ok', { every: 1000, data: 1, extra: true }, /extra/],
      ['bad%20name', { every: 1000, data: 1 }, /schedule name/],
    ];
    for (const [name, body, message] of cases) {
      const res = await app.call('PUT', `/v1/users/strict/schedules/${name}`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe('PB_ERR_VALIDATION');
      expect(error.message).toMatch(message);
    }
    const list = (await (await app.call('GET', '/v1/users/strict/schedules')).json()) as { schedules: unknown[] };
    expect(list.schedules).toEqual([]);
    const unknown = await app.call('DELETE', '/v1/users/strict/schedules/nothing');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_SCHEDULE_NOT_FOUND');
    expect((await app.queue('scheduled').getJobSchedulers()).map((s) => s.key)).toEqual([]);
  });
});
