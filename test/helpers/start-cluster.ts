import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { freePort, isRunning, signalAndWait, spawnRedisServer } from './start-redis.js';

const run = promisify(execFile);
const HOST = '127.0.0.1';
/** Redis Cluster has 16384 hash slots (cluster specification, "Keys distribution model"). */
const SLOTS = 16_384;
/** How long formation or a rejoin may take before the helper gives up, in ms; generous for a loaded 2-core machine. */
const CLUSTER_DEADLINE_MS = 30_000;
/** Pause between two polls of CLUSTER INFO / CLUSTER SLOTS, in ms. */
const POLL_MS = 100;
/** Upper bound on candidate names tried by usersOnEveryShard: enough for thousands of ids per shard. */
const MAX_CANDIDATES = 1_000_000;

export interface StartClusterOptions {
  /**
   * Number of masters, each owning an equal share of the slots; no replicas.
   * `redis-cli --cluster create` needs at least 3.
   * @defaultValue 3
   */
  masters?: number;
  /**
   * Redis's `cluster-require-full-coverage`: with `true` (Redis's default) every node refuses
   * every command (CLUSTERDOWN) once a master is marked failed and its slots have no server;
   * with `false` the other masters go on serving their own slots. Passed on the command line,
   * so a restarted node keeps it.
   * @defaultValue true
   */
  requireFullCoverage?: boolean;
}

/** One master of the test cluster. `pid` is that of the current process, undefined while it is down. */
export interface ClusterNode {
  readonly host: string;
  readonly port: number;
  /** The cluster bus port (set explicitly: port + 10000 may not exist for an ephemeral port). */
  readonly busPort: number;
  /** Its own temp dir: nodes.conf and the append-only files. */
  readonly dir: string;
  readonly pid: number | undefined;
}

/** A real Redis Cluster of private redis-server processes on loopback, append-only on. */
export interface TestCluster {
  readonly nodes: readonly ClusterNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,...`: the value for REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** An ioredis Cluster client for assertions; closed by stop(). */
  client(): Cluster;
  /** The master serving a key's slot (hash tags honoured), from the slot map read when the cluster formed. */
  nodeForKey(key: string): { host: string; port: number; index: number };
  /**
   * `countPerShard` user ids per master whose hash tag `{userId}` lands on that master,
   * grouped by node index order: ids of node 0 first. Names are `${prefix}-${n}`.
   */
  usersOnEveryShard(countPerShard: number, prefix?: string): string[];
  /** Sends a signal (SIGKILL unless told) to one node, by pid, and waits for it to exit. */
  kill(nodeIndex: number, signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts a killed node again on the same port, dir and nodes.conf; resolves once every node
   * says cluster_state:ok and none marks another failing.
   */
  restart(nodeIndex: number): Promise<void>;
  /** Closes the clients, SIGKILLs every node it started and removes the temp dirs. */
  stop(): Promise<void>;
}

interface NodeState {
  readonly host: string;
  readonly port: number;
  readonly busPort: number;
  readonly dir: string;
  child: ChildProcess | undefined;
}

/** A range of slots and the port of the master serving it. */
type SlotRange = { start: number; end: number; port: number };

function parseSlots(reply: unknown): SlotRange[] {
  // CLUSTER SLOTS: [[start, end, [ip, port, id], ...replicas], ...]
  return (reply as [number, number, [string, number, string]][])
    .map(([start, end, master]) => ({ start, end, port: master[1] }))
    .sort((a, b) => a.start - b.start);
}

/** One token per slot range, `start-end@port`, sorted: two nodes agree when these strings are equal. */
function describeSlots(ranges: SlotRange[]): string {
  return ranges.map((r) => `${r.start}-${r.end}@${r.port}`).join(' ');
}

export async function startCluster(options: StartClusterOptions = {}): Promise<TestCluster> {
  const masters = options.masters ?? 3;
  const fullCoverage = options.requireFullCoverage ?? true;
  if (!Number.isInteger(masters) || masters < 3) throw new Error(`a cluster needs at least 3 masters, not ${masters}`);
  const root = mkdtempSync(join(tmpdir(), 'postbox-cluster-'));
  const states: NodeState[] = [];
  const clients: Cluster[] = [];
  let slotMap: SlotRange[] = [];

  function argsFor(node: NodeState): string[] {
    return [
      '--port', String(node.port),
      '--bind', HOST,
      '--dir', node.dir,
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(node.dir, 'nodes.conf'),
      '--cluster-port', String(node.busPort),
      '--cluster-node-timeout', '2000',
      '--cluster-require-full-coverage', fullCoverage ? 'yes' : 'no',
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--save', '',
    ];
  }

  async function launch(node: NodeState): Promise<void> {
    node.child = await spawnRedisServer(argsFor(node));
  }

  /**
   * Polls every node until all say cluster_state:ok, report the same full slot map and mark no
   * node failing (`fail` or `fail?` in CLUSTER NODES): without full coverage required, a node
   * says ok while another is marked failed.
   */
  async function waitForClusterOk(): Promise<SlotRange[]> {
    const probes = states.map(
      (n) => new Redis(n.port, n.host, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2_000 }),
    );
    // A node that is still starting refuses connections: expected while polling.
    for (const p of probes) p.on('error', () => undefined);
    const deadline = Date.now() + CLUSTER_DEADLINE_MS;
    let last: string[] = [];
    try {
      while (Date.now() < deadline) {
        const views = await Promise.all(
          probes.map(async (p) => {
            try {
              const info = await p.cluster('INFO');
              const slots = parseSlots(await p.cluster('SLOTS'));
              const failing = /[,\s]fail\??[,\s]/.test(String(await p.cluster('NODES')));
              const state = `${info.match(/cluster_state:\w+/)?.[0]}${failing ? ' (a node marked failing)' : ''}`;
              return { ok: /^cluster_state:ok\r?$/m.test(info) && !failing, slots, text: `${state} ${describeSlots(slots)}` };
            } catch (err) {
              return { ok: false, slots: [], text: (err as Error).message };
            }
          }),
        );
        last = views.map((v, i) => `node ${i} (:${states[i]!.port}): ${v.text}`);
        const first = views[0]!;
        const covered = first.slots.reduce((sum, r) => sum + r.end - r.start + 1, 0);
        const agree = views.every((v) => describeSlots(v.slots) === describeSlots(first.slots));
        if (views.every((v) => v.ok) && agree && covered === SLOTS) return first.slots;
        await delay(POLL_MS);
      }
    } finally {
      for (const p of probes) p.disconnect();
    }
    throw new Error(`cluster not ok within ${CLUSTER_DEADLINE_MS} ms:\n${last.join('\n')}`);
  }

  function killAllNow(): void {
    for (const n of states) if (isRunning(n.child)) n.child.kill('SIGKILL');
  }
  // Should the test process end without stop(), leave no redis-server behind.
  process.once('exit', killAllNow);

  async function stop(): Promise<void> {
    process.removeListener('exit', killAllNow);
    for (const c of clients.splice(0)) c.disconnect();
    await Promise.all(states.map((n) => signalAndWait(n.child, 'SIGKILL')));
    rmSync(root, { recursive: true, force: true });
  }

  try {
    // freePort releases each port before returning it, so the next call may hand it out again.
    const ports = new Set<number>();
    for (let tries = 0; ports.size < 2 * masters && tries < 100; tries += 1) ports.add(await freePort());
    if (ports.size < 2 * masters) throw new Error('could not find enough distinct free ports');
    const free = [...ports];
    for (let i = 0; i < masters; i += 1) {
      const dir = join(root, `node-${i}`);
      mkdirSync(dir);
      states.push({ host: HOST, port: free[2 * i]!, busPort: free[2 * i + 1]!, dir, child: undefined });
    }
    await Promise.all(states.map(launch));
    const addresses = states.map((n) => `${n.host}:${n.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: CLUSTER_DEADLINE_MS,
    });
    slotMap = await waitForClusterOk();
  } catch (err) {
    await stop();
    throw err;
  }

  function nodeForKey(key: string): { host: string; port: number; index: number } {
    const slot = calculateSlot(key);
    const range = slotMap.find((r) => slot >= r.start && slot <= r.end);
    const index = states.findIndex((n) => n.port === range?.port);
    if (index < 0) throw new Error(`no node owns slot ${slot} of ${key}`);
    return { host: HOST, port: states[index]!.port, index };
  }

  function nodeAt(index: number): NodeState {
    const node = states[index];
    if (!node) throw new Error(`no node ${index}: the cluster has ${states.length}`);
    return node;
  }

  return {
    nodes: states.map((n) => ({
      host: n.host,
      port: n.port,
      busPort: n.busPort,
      dir: n.dir,
      get pid() {
        return isRunning(n.child) ? n.child.pid : undefined;
      },
    })),
    seeds: states.map((n) => `${n.host}:${n.port}`).join(','),
    client() {
      const c = new Cluster(
        states.map((n) => ({ host: n.host, port: n.port })),
        { redisOptions: { maxRetriesPerRequest: 1 } },
      );
      // Tests kill nodes on purpose; reconnection errors are expected noise.
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    nodeForKey,
    usersOnEveryShard(countPerShard, prefix = 'user') {
      if (/[{}]/.test(prefix)) throw new Error('the prefix must not contain braces: they would change the hash tag');
      const found: string[][] = states.map(() => []);
      for (let n = 0; n < MAX_CANDIDATES && found.some((ids) => ids.length < countPerShard); n += 1) {
        const id = `${prefix}-${n}`;
        const ids = found[nodeForKey(`{${id}}`).index]!;
        if (ids.length < countPerShard) ids.push(id);
      }
      if (found.some((ids) => ids.length < countPerShard)) {
        throw new Error(`fewer than ${countPerShard} ids per shard among ${MAX_CANDIDATES} candidates`);
      }
      return found.flat();
    },
    async kill(nodeIndex, signal = 'SIGKILL') {
      await signalAndWait(nodeAt(nodeIndex).child, signal);
    },
    async restart(nodeIndex) {
      const node = nodeAt(nodeIndex);
      if (isRunning(node.child)) throw new Error(`node ${nodeIndex} is still running: kill it first`);
      await launch(node);
      await waitForClusterOk();
    },
    stop,
  };
}
