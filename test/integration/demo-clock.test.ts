import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createDemo, type Demo } from '../../src/http/demo-routes.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

// Recurring schedules that end by themselves (`until`) and leave no job behind, and the demo's
// clock built on them: it lapses soon after its tab stops saying hello, even across a restart
// of the demo's backend, and a room message retried with the same msgId is one message.
let redis: TestRedis;
let app: TestApp;
const closers: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000 });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await app?.close();
  await redis?.stop();
});

interface ScheduleView {
  name: string;
  until?: string;
  next: string | null;
}

const schedules = async (userId: string) =>
  ((await (await app.call('GET', `/v1/users/${userId}/schedules`)).json()) as { schedules: ScheduleView[] }).schedules;
let plain: ReturnType<TestRedis['client']> | undefined;
/** Entries in the user's mailbox. */
const stored = (userId: string) => (plain ??= redis.client()).xlen(`pb:{${userId}}:m`);

/** Until no iteration of this user's schedules is planned or running. */
async function noTickPending(userId: string): Promise<void> {
  const scheduled = app.postbox.queues.find((q) => q.name === 'scheduled')!;
  const pending = async () => (await scheduled.getJobs(['delayed', 'waiting', 'prioritized', 'active'])).filter((j) => j?.data?.userId === userId);
  await eventually(pending, (jobs) => jobs.length === 0, `no pending tick of ${userId}`);
}

/** Waits until a control schedule of another user has sent `n` more messages: time enough for `n` ticks. */
async function whileTicking(n: number): Promise<void> {
  const user = `metronome-${Math.random().toString(36).slice(2)}`;
  await app.call('PUT', `/v1/users/${user}/schedules/beat`, { every: 200, data: 1 });
  await eventually(() => stored(user), (len) => len >= n, `${n} beats`);
  await app.call('DELETE', `/v1/users/${user}/schedules/beat`);
}

/** The demo's backend as a separate app calling the node's public API, with short windows. */
async function startDemo(presenceMs: number): Promise<{ demo: Demo; url: string; close: () => Promise<void> }> {
  const logger = pino({ level: 'silent' });
  const demo = createDemo({ apiUrl: () => app.url, apiKey: app.config.API_KEY, logger, clock: systemClock, presenceMs, clockMs: 200 });
  const koa = new Koa();
  koa.use(errorMiddleware(logger));
  koa.use(demo.router.routes());
  const server: Server = createServer(koa.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    demo.close();
    await new Promise((resolve) => server.close(resolve));
  };
  closers.push(close);
  return { demo, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('recurring schedules with until', () => {
  it('send nothing after until, say next: null then, and keep no completed job per message', async () => {
    const until = new Date(Date.now() + 1500).toISOString();
    const res = await app.call('PUT', '/v1/users/lapsing/schedules/tick', { every: 200, data: 't', until });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'tick', until });
    await eventually(() => stored('lapsing'), (len) => len >= 2, 'two ticks');

    // Past until: no next run is planned, and while 5 more beats of another schedule go by, nothing comes.
    await eventually(() => schedules('lapsing'), (s) => s[0]?.next === null, 'next: null');
    await noTickPending('lapsing');
    const length = await stored('lapsing');
    await whileTicking(5);
    expect(await stored('lapsing')).toBe(length);
    // Every iteration's job was removed on completion: the messages are the record.
    const completed = await app.postbox.queues.find((q) => q.name === 'scheduled')!.getCompleted(0, 1000);
    expect(completed.filter((j) => j.name === 'recurring')).toEqual([]);
  });

  it('refuses an until in the past or more than a year ahead', async () => {
    for (const until of [Date.now() - 1000, new Date(Date.now() - 1000).toISOString(), Date.now() + 400 * 86_400_000]) {
      const res = await app.call('PUT', '/v1/users/nobody/schedules/x', { every: 1000, data: 1, until });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/until/);
    }
    expect(await schedules('nobody')).toEqual([]);
  });
});

describe('the demo clock', () => {
  it('is renewed by each hello and removed at bye', async () => {
    const { url } = await startDemo(60_000);
    expect((await post(`${url}/demo/api/login`, { name: 'hello-bye' })).status).toBe(200);
    const [first] = await schedules('hello-bye');
    expect(first?.name).toBe('clock');
    const firstUntil = Date.parse(first!.until!);
    expect(firstUntil).toBeGreaterThan(Date.now());
    expect(firstUntil).toBeLessThanOrEqual(Date.now() + 60_000);

    // A hello a few ms later (until has ms resolution) moves it on.
    await eventually(async () => Date.now(), (now) => now > firstUntil - 60_000 + 20, 'a few ms');
    expect((await post(`${url}/demo/api/presence`, { name: 'hello-bye' })).status).toBe(204);
    const renewed = await eventually(
      () => schedules('hello-bye'),
      (s) => Date.parse(s[0]?.until ?? '') > firstUntil,
      'until moved by the hello',
    );
    expect(renewed).toHaveLength(1);

    expect((await post(`${url}/demo/api/presence`, { name: 'hello-bye', bye: true })).status).toBe(204);
    await eventually(() => schedules('hello-bye'), (s) => s.length === 0, 'the clock removed at bye');
  });

  it('stops by itself when the tab goes quiet, even after the backend forgot the tab (a restart)', async () => {
    const first = await startDemo(1500);
    expect((await post(`${first.url}/demo/api/login`, { name: 'quiet' })).status).toBe(200);
    await eventually(() => stored('quiet'), (len) => len >= 2, 'clock ticks');
    await first.close(); // the backend goes away; nobody will remove the schedule

    await eventually(() => schedules('quiet'), (s) => s[0]?.next === null, 'the clock lapsed');
    await noTickPending('quiet');
    const length = await stored('quiet');
    await whileTicking(5);
    expect(await stored('quiet')).toBe(length);
  });

  it('sends a room message retried with the same msgId once', async () => {
    const { url } = await startDemo(60_000);
    for (const name of ['room-a', 'room-b']) expect((await post(`${url}/demo/api/login`, { name })).status).toBe(200);
    const send = { from: 'room-a', room: 'lobby', text: 'only once', msgId: 'msg-0123456789' };
    for (let i = 0; i < 2; i += 1) expect((await post(`${url}/demo/api/send`, send)).status).toBe(202);
    // Both sends were answered, so both reached the fan-out queue: one job is one message.
    const detail = async () => (await (await app.admin('/admin/rooms/lobby')).json()) as { fanouts: Array<{ jobId: string }> };
    const room = await eventually(detail, (d) => d.fanouts.length > 0, 'the fan-out');
    expect(room.fanouts).toHaveLength(1);
    expect(room.fanouts[0]?.jobId).toMatch(/^rk-/); // keyed by the producer key
  });
});
