import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { LogLine } from '../helpers/log-capture.js';
import { openSse } from '../helpers/read-sse.js';
import { spawnServer } from '../helpers/spawn-server.js';
import { TEST_KEYS } from '../helpers/test-keys.js';
import { startNodeForTest, useRedis } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

// Nodes come and go in each test (SIGKILLed processes, a restarted redis-server): one Redis, no shared node.
const redis = useRedis();

const producerHeaders = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };

async function enqueueAt(url: string, userId: string, data: unknown): Promise<string> {
  const res = await fetch(`${url}/v1/users/${userId}/messages`, {
    method: 'POST',
    headers: producerHeaders,
    body: JSON.stringify({ data }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function tokenAt(url: string, userId: string): Promise<string> {
  const res = await fetch(`${url}/v1/tokens`, { method: 'POST', headers: producerHeaders, body: JSON.stringify({ userId }) });
  return ((await res.json()) as { token: string }).token;
}

// Some tests start the server as a process, twice (tsx compiles it each time), or restart
// redis-server: tens of seconds on a loaded machine.
describe('faults', { timeout: 300_000 }, () => {
  it('loses no unacked message when the server process is SIGKILLed', async () => {
    const env = { REDIS_URL: redis.url, KEY_PREFIX: 'kill', ACK_TIMEOUT_MS: 60_000, DRAIN_INTERVAL_MS: 50 };
    const first = await spawnServer(env);
    const token = await tokenAt(first.url, 'survivor');
    const sse = await openSse(`${first.url}/v1/stream?token=${token}`);
    const ids: string[] = [];
    for (let i = 0; i < 20; i += 1) ids.push(await enqueueAt(first.url, 'survivor', i));
    // Delivered but not acked: in flight when the process dies.
    await sse.waitFor(20);
    const offline: string[] = [];
    sse.close();
    for (let i = 20; i < 30; i += 1) offline.push(await enqueueAt(first.url, 'survivor', i));
    expect(await first.kill('SIGKILL')).toBe(-1);

    const second = await spawnServer(env);
    try {
      const again = await openSse(`${second.url}/v1/stream?token=${token}`);
      const events = await again.waitFor(30);
      expect(events.map((e) => e.id)).toEqual([...ids, ...offline]);
      again.close();
    } finally {
      await second.kill('SIGTERM');
    }
  });

  it('loses no answered enqueue when redis-server is SIGKILLed and restarts from its append-only file', async () => {
    const app = await startNodeForTest(redis, { KEY_PREFIX: 'aof' });
    // With appendfsync everysec (start-redis.ts), Redis may answer before it writes the
    // append-only file while a background fsync is slow, and a SIGKILL then loses those writes
    // (redis.io/docs: persistence). `always` writes and syncs before answering: the guarantee
    // this test is about. The restart below goes back to everysec.
    await redis.client().config('SET', 'appendfsync', 'always');
    const ids: string[] = [];
    for (let i = 0; i < 200; i += 1) ids.push(await app.enqueue(`aof-${i % 4}`, { i }));
    await redis.kill('SIGKILL');
    await redis.restart();
    const check = redis.client();
    let total = 0;
    for (let u = 0; u < 4; u += 1) {
      const entries = await check.xrange(`aof:{aof-${u}}:m`, '-', '+');
      expect(entries.map(([id]) => id)).toEqual(ids.filter((_, i) => i % 4 === u));
      total += entries.length;
    }
    expect(total).toBe(200);
    // The node reconnects by itself and delivers them.
    await waitUntil(async () => (await fetch(`${app.url}/readyz`)).status === 200, 'the node is ready again');
    const sse = await app.openStream('aof-0');
    const events = await sse.waitFor(50);
    expect(events.map((e) => e.id)).toEqual(ids.filter((_, i) => i % 4 === 0));
    sse.close();
  });

  it('answers 503 at once while Redis is down, keeps streams open, and resumes when it returns', async () => {
    const logs: LogLine[] = [];
    const app = await startNodeForTest(
      redis,
      { KEY_PREFIX: 'down', DRAIN_INTERVAL_MS: 100, HEARTBEAT_MS: 1000 },
      { logs: 'error', logLines: logs },
    );
    const token = await app.token('patient');
    const sse = await app.openStream('patient', { token });
    const before = await app.enqueue('patient', 'before');
    await sse.waitFor(1);
    await app.ack(token, [before]);

    await redis.kill('SIGKILL');
    const res = await app.produce('/v1/users/patient/messages', { data: 'during' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_REDIS_UNAVAILABLE');
    // No hanging request: the request connection has no offline queue, so the command fails at
    // once rather than after the command timeout. The logged cause tells which, without a clock.
    const failure = logs.find((l) => l.path === '/v1/users/patient/messages');
    expect(failure, 'the 503 is logged with its cause').toBeDefined();
    expect((failure!.err as { message: string }).message).not.toMatch(/timed out/i);
    expect((await fetch(`${app.url}/readyz`)).status).toBe(503);
    const batch = await app.produce('/v1/messages', { messages: [{ userId: 'patient', data: 1 }] });
    expect(batch.status).toBe(503);
    const acks = await app.ack(token, ['1-0']);
    expect(acks.status).toBe(503);

    // The stream stays open through the outage: heartbeats keep coming.
    const pings = sse.comments.length;
    await waitUntil(() => sse.comments.length > pings, 'a heartbeat arrives while Redis is down');

    await redis.restart();
    await waitUntil(async () => (await fetch(`${app.url}/readyz`)).status === 200, 'the node is ready again');
    const after = await app.enqueue('patient', 'after');
    const events = await sse.waitFor(2);
    expect(events.map((e) => e.id)).toEqual([before, after]);
    expect(JSON.parse(events[1]!.data)).toBe('after');
    sse.close();
  });

  it('ends streams on SIGTERM and exits cleanly', async () => {
    const server = await spawnServer({ REDIS_URL: redis.url, KEY_PREFIX: 'term' });
    const sse = await openSse(`${server.url}/v1/stream?token=${await tokenAt(server.url, 'leaver')}`);
    expect(sse.status).toBe(200);
    expect(await server.kill('SIGTERM')).toBe(0);
    await sse.ended;
    expect(server.output()).toMatch(/"msg":"stopped"/);
  });

  it('exits with code 1, and says so, when the graceful close outlasts SHUTDOWN_TIMEOUT_MS', async () => {
    const server = await spawnServer({ REDIS_URL: redis.url, KEY_PREFIX: 'slowstop', SHUTDOWN_TIMEOUT_MS: 1000 });
    // A request under way whose body never comes: the close gives it 5 s, longer than the timeout.
    const socket = connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.write(
      'POST /v1/users/slow-body/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        `Authorization: Bearer ${TEST_KEYS.API_KEY}\r\nContent-Type: application/json\r\n` +
        'Content-Length: 100\r\nExpect: 100-continue\r\n\r\n',
    );
    // Node answers 100 Continue once it has read the headers: the request is under way.
    await waitUntil(() => answer.startsWith('HTTP/1.1 100 Continue'), 'the server reads the request headers');
    try {
      expect(await server.kill('SIGTERM')).toBe(1);
      expect(server.output()).toContain('shutdown took longer than SHUTDOWN_TIMEOUT_MS (1000 ms); exiting');
      expect(server.output()).not.toMatch(/"msg":"stopped"/);
    } finally {
      socket.destroy();
    }
  });
});
