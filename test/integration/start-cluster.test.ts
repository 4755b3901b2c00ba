import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../helpers/start-cluster.js';

let cluster: TestCluster;
const direct: Redis[] = [];

beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  for (const r of direct) r.disconnect();
  await cluster?.stop();
});

/** A plain (non-cluster) connection to one node: it answers MOVED for keys it does not own. */
function connect(port: number): Redis {
  const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  direct.push(r);
  return r;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * With appendfsync everysec, redis may answer a write before write(2)-ing it to the
 * append-only file (while a background fsync runs); once aof_buffer_length is 0 it is
 * in the kernel and survives a SIGKILL of the process.
 */
async function aofWritten(redis: Redis): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (/^aof_buffer_length:0\r?$/m.test(await redis.info('persistence'))) return;
    await delay(50);
  }
  throw new Error('the append-only buffer was not written within 10 s');
}

describe('startCluster', () => {
  it('forms a cluster of three masters that agree on all 16384 slots', async () => {
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.seeds).toBe(cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(','));
    for (const node of cluster.nodes) {
      const info = await connect(node.port).cluster('INFO');
      expect(info).toMatch(/^cluster_state:ok\r?$/m);
      expect(info).toMatch(/^cluster_slots_assigned:16384\r?$/m);
      expect(info).toMatch(/^cluster_known_nodes:3\r?$/m);
      expect(info).toMatch(/^cluster_size:3\r?$/m);
      expect(node.pid).toBeGreaterThan(0);
      expect(existsSync(`${node.dir}/nodes.conf`)).toBe(true);
    }
  });

  it('puts users found by usersOnEveryShard on every master, where the servers route them', async () => {
    const users = cluster.usersOnEveryShard(2, 'shard');
    expect(users).toHaveLength(6);
    expect(new Set(users).size).toBe(6);
    expect(users.map((u) => cluster.nodeForKey(`pb:{${u}}:m`).index)).toEqual([0, 0, 1, 1, 2, 2]);

    const client = cluster.client();
    for (const u of users) await client.set(`routing:{${u}}:k`, u);
    for (const [index, node] of cluster.nodes.entries()) {
      const redis = connect(node.port);
      const own = users.filter((u) => cluster.nodeForKey(`{${u}}`).index === index);
      // The key is stored on the node nodeForKey names, and only there.
      expect((await redis.keys('routing:*')).sort()).toEqual(own.map((u) => `routing:{${u}}:k`).sort());
      for (const u of users) {
        const read = redis.get(`routing:{${u}}:k`);
        if (own.includes(u)) await expect(read).resolves.toBe(u);
        else await expect(read).rejects.toThrow(/MOVED/);
      }
    }
  });

  it('restarts a SIGKILLed master on its port, and it rejoins with its data from the append-only file', async () => {
    const user = cluster.usersOnEveryShard(1, 'durable')[1]!;
    const key = `durable:{${user}}:k`;
    expect(cluster.nodeForKey(key).index).toBe(1);
    const node = cluster.nodes[1]!;
    const redis = connect(node.port);
    await redis.set(key, 'kept');
    await aofWritten(redis);

    const before = node.pid!;
    await cluster.kill(1);
    expect(node.pid).toBeUndefined();
    expect(alive(before)).toBe(false);
    await expect(redis.get(key)).rejects.toThrow();

    await cluster.restart(1);
    expect(node.pid).toBeGreaterThan(0);
    expect(node.pid).not.toBe(before);
    const info = await connect(node.port).cluster('INFO');
    expect(info).toMatch(/^cluster_state:ok\r?$/m);
    expect(await connect(node.port).get(key)).toBe('kept');
    expect(await cluster.client().get(key)).toBe('kept');
  });

  it('stop leaves no redis-server running and no temp dir', async () => {
    const pids = cluster.nodes.map((n) => n.pid!);
    expect(pids.every((pid) => alive(pid))).toBe(true);
    await cluster.stop();
    expect(pids.filter((pid) => alive(pid))).toEqual([]);
    expect(cluster.nodes.map((n) => n.pid)).toEqual([undefined, undefined, undefined]);
    expect(cluster.nodes.filter((n) => existsSync(n.dir))).toEqual([]);
  });
});
