import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, sleep } from '../helpers/read-sse.js';
import { spawnServer, TEST_KEYS, type ServerProcess } from '../helpers/spawn-server.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The real server as a process, SIGKILLed while its page holds messages it has not acked, again
// and again. Under the old rules every write counted as a delivery, so with MAX_DELIVERIES 1
// the second round would have found dead letters. A write the page could not have handled is an
// attempt (bounded by MAX_ATTEMPTS), not a delivery.
let redis: TestRedis;
const servers: ServerProcess[] = [];

/** KILL_ROUNDS: the soak (npm run test:soak) kills more often. */
const ROUNDS = Number(process.env.KILL_ROUNDS ?? 3);
const MESSAGES = 20;
const ENV = { KEY_PREFIX: 'kill', MAX_DELIVERIES: 1, MAX_ATTEMPTS: ROUNDS + 5, ACK_TIMEOUT_MS: 60_000, DRAIN_INTERVAL_MS: 50 };

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.kill('SIGKILL')));
  await redis?.stop();
});

const producer = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };
const admin = { authorization: `Bearer ${TEST_KEYS.ADMIN_KEY}` };

async function json<T>(res: Response): Promise<T> {
  expect(res.status).toBeLessThan(300);
  return (await res.json()) as T;
}

interface View {
  waiting: number;
  inflight: number;
  dead: number;
  inflightMessages: Array<{ id: string; deliveries: number; attempts: number }>;
}

describe('postbox SIGKILLed mid-delivery, repeatedly', () => {
  it(`redelivers everything after each of ${ROUNDS} kills, none lost and none a dead letter`, { timeout: 120_000 }, async () => {
    // Two servers: a round uses one while the other starts, so no round waits for a whole start-up.
    const start = () => spawnServer({ ...ENV, REDIS_URL: redis.url }).then((s) => (servers.push(s), s));
    let next = start();
    const first = await start();
    const { ids } = await json<{ ids: string[] }>(
      await fetch(`${first.url}/v1/messages`, {
        method: 'POST',
        headers: producer,
        body: JSON.stringify({ messages: Array.from({ length: MESSAGES }, (_, i) => ({ userId: 'held', data: { i } })) }),
      }),
    );
    const { token } = await json<{ token: string }>(
      await fetch(`${first.url}/v1/tokens`, { method: 'POST', headers: producer, body: JSON.stringify({ userId: 'held' }) }),
    );
    let server = first;
    for (let round = 1; round <= ROUNDS; round += 1) {
      const reader = await openSse(`${server.url}/v1/stream?token=${encodeURIComponent(token)}`);
      expect(reader.status).toBe(200);
      const events = await reader.waitFor(MESSAGES, 20_000);
      expect(`round ${round}: ${events.map((e) => e.id).join(',')}`).toBe(`round ${round}: ${ids.join(',')}`);
      const view = await json<View>(await fetch(`${server.url}/admin/queues/held`, { headers: admin }));
      expect(view).toMatchObject({ dead: 0, inflight: MESSAGES, waiting: 0 });
      expect(view.inflightMessages.every((m) => m.deliveries === 0)).toBe(true);
      // Killed with all of them written to the page and none acked.
      expect(await server.kill('SIGKILL')).toBe(-1);
      reader.close();
      server = await next;
      if (round < ROUNDS) next = start();
    }
    // The page finally handles them: everything is acked, nothing is dead.
    const reader = await openSse(`${server.url}/v1/stream?token=${encodeURIComponent(token)}`);
    await reader.waitFor(MESSAGES, 20_000);
    const acked = await json<{ acked: number }>(
      await fetch(`${server.url}/v1/acks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ids }),
      }),
    );
    expect(acked.acked).toBe(MESSAGES);
    reader.close();
    const deadline = Date.now() + 10_000;
    let view = await json<View>(await fetch(`${server.url}/admin/queues/held`, { headers: admin }));
    while (view.inflight > 0 && Date.now() < deadline) {
      await sleep(50);
      view = await json<View>(await fetch(`${server.url}/admin/queues/held`, { headers: admin }));
    }
    expect(view).toMatchObject({ dead: 0, inflight: 0, waiting: 0 });
    await server.kill('SIGTERM');
  });
});
