import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAckingPage, type AckingPage } from '../helpers/acking-page.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';
import { TEST_KEYS, spawnServer, type ServerProcess } from '../helpers/spawn-server.js';
import { waitUntil } from '../helpers/wait-until.js';

// Real postbox processes on a 3-master Redis Cluster: killed and restarted under load, nothing
// answered is lost, nothing acked comes again, nothing reaches another user.
let cluster: TestCluster;
const servers: ServerProcess[] = [];
const readers: SseReader[] = [];
const pages: AckingPage[] = [];

beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await Promise.allSettled(pages.map((p) => p.stop()));
  for (const r of readers) r.close();
  await Promise.allSettled(servers.map((s) => s.kill('SIGKILL')));
  await cluster?.stop();
});

async function node(port?: number): Promise<ServerProcess> {
  const server = await spawnServer(
    { REDIS_CLUSTER_NODES: cluster.seeds, ACK_TIMEOUT_MS: 1000, DRAIN_INTERVAL_MS: 50 },
    port,
  );
  servers.push(server);
  return server;
}

const call = (server: ServerProcess, path: string, body: unknown, key: string = TEST_KEYS.API_KEY) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

async function token(server: ServerProcess, userId: string): Promise<string> {
  return ((await (await call(server, '/v1/tokens', { userId })).json()) as { token: string }).token;
}

/** A page of one user on `server` that acks what it gets and records every message it saw (ids, data). */
async function page(server: ServerProcess, userId: string): Promise<AckingPage> {
  const p = openAckingPage(server.url, await token(server, userId));
  pages.push(p);
  return p;
}

describe('faults on a Redis Cluster', () => {
  it('loses nothing in flight when the node holding the streams is SIGKILLed', { timeout: 60_000 }, async () => {
    const a = await node();
    const users = cluster.usersOnEveryShard(1, 'killed');
    // In flight on a stream that never acks: the node dies with them written and unacked.
    const streams = await Promise.all(users.map(async (u) => openSse(`${a.url}/v1/stream?token=${await token(a, u)}`)));
    readers.push(...streams);
    const ids = await Promise.all(
      users.map(async (u) => ((await (await call(a, `/v1/users/${u}/messages`, { data: u })).json()) as { id: string }).id),
    );
    await Promise.all(streams.map((s) => s.waitFor(1, 20_000)));
    await a.kill('SIGKILL');
    // The users come back through another node and get their messages again: each only their own.
    const b = await node();
    for (const [i, u] of users.entries()) {
      const again = await openSse(`${b.url}/v1/stream?token=${await token(b, u)}`);
      readers.push(again);
      const [event] = await again.waitFor(1, 20_000);
      expect(event).toMatchObject({ id: ids[i], data: JSON.stringify(u) });
      again.close();
    }
  });

  it('loses no answered message and delivers none to another user across a rolling restart under load', { timeout: 120_000 }, async () => {
    const first = await node();
    const second = await node();
    const users = cluster.usersOnEveryShard(2, 'rolling');
    // Each user's page on one node, producers on both.
    const pages = await Promise.all(users.map((u, i) => page(i % 2 === 0 ? first : second, u)));
    const sent = new Map<string, string>();
    let producing = true;
    let n = 0;
    const producer = (async () => {
      while (producing) {
        const u = users[n % users.length]!;
        const via = n % 2 === 0 ? first : second;
        try {
          const res = await call(via, `/v1/users/${u}/messages`, { data: { n, u }, key: `m-${n}` });
          if (res.status === 201 || res.status === 200) sent.set(((await res.json()) as { id: string }).id, u);
        } catch {
          // That node is restarting: the producer retries elsewhere (the next message).
        }
        n += 1;
        await sleep(10);
      }
    })();
    await waitUntil(() => sent.size >= 40, 'traffic flows', 30_000);
    // Restart each node in turn on its own port, with a graceful SIGTERM.
    for (const server of [first, second]) {
      const port = server.port;
      expect(await server.kill('SIGTERM')).toBe(0);
      servers.push(await node(port));
      const before = sent.size;
      await waitUntil(() => sent.size >= before + 20, 'traffic flows again through both nodes', 30_000);
    }
    producing = false;
    await producer;
    // Every answered enqueue reaches its own user's page, and nobody else's.
    await waitUntil(
      () => [...sent].every(([id, u]) => pages[users.indexOf(u)]!.seen.has(id)),
      'every answered message reached its user',
      60_000,
    );
    for (const [i, p] of pages.entries()) {
      for (const data of p.seen.values()) expect(JSON.parse(data).u).toBe(users[i]);
    }
    await Promise.all(pages.map((p) => p.stop()));
  });
});
