import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command, Reply, Request, StatsResult, TargetSpec } from './protocol.js';

/* The load-generator processes, seen from the bench: fork, command all at once, gather replies. */

export interface GeneratorPool {
  readonly size: number;
  readonly pids: readonly number[];
  /** Points every generator at a new target; drops streams, tokens and counters of the last one. */
  init(target: TargetSpec): Promise<void>;
  /** Sends each generator the command `make(index)` and resolves with every result, in order. */
  all<T>(make: (index: number) => Command): Promise<T[]>;
  /** Counters of every generator for `epoch`, summed; latency samples concatenated when asked for. */
  stats(epoch: number, samples?: boolean): Promise<PoolStats>;
  /** This generator's share of `users` (user i goes to generator i mod size). */
  share<T>(users: readonly T[], index: number): T[];
  close(): Promise<void>;
}

export interface PoolStats extends Omit<StatsResult, 'cpuSeconds'> {
  /** CPU seconds of each generator so far. */
  cpuSeconds: number[];
}

const GENERATOR = fileURLToPath(new URL('generator.ts', import.meta.url));
/** A generator that has not answered in this long is taken for dead, ms. */
const REPLY_TIMEOUT_MS = 120_000;

/**
 * Forks `size` generators. Generator i sends from 127.0.0.(2+i), so each has
 * its own ephemeral-port range towards the targets on 127.0.0.1.
 */
export async function startGeneratorPool(size: number): Promise<GeneratorPool> {
  const children: ChildProcess[] = [];
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  let nextId = 1;
  for (let i = 0; i < size; i += 1) {
    const child = fork(GENERATOR, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', (reply: Reply) => {
      const w = waiting.get(reply.id);
      if (w === undefined) return;
      waiting.delete(reply.id);
      clearTimeout(w.timer);
      if (reply.ok) w.resolve(reply.result);
      else w.reject(new Error(`generator ${i}: ${reply.error ?? 'failed'}`));
    });
    child.on('exit', (code) => {
      for (const [id, w] of waiting) {
        waiting.delete(id);
        clearTimeout(w.timer);
        w.reject(new Error(`generator ${i} exited with ${code}`));
      }
    });
    children.push(child);
  }

  const send = <T>(child: ChildProcess, command: Command): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`generator did not answer ${command.cmd} in ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      child.send({ id, command } satisfies Request);
    });
  const all = <T>(make: (index: number) => Command) => Promise.all(children.map((c, i) => send<T>(c, make(i))));

  return {
    size,
    pids: children.map((c) => c.pid ?? 0),
    all,
    async init(target) {
      await all((i) => ({ cmd: 'init', target, index: i, localAddress: `127.0.0.${2 + i}` }));
    },
    async stats(epoch, samples = false) {
      const each = await all<StatsResult>(() => ({ cmd: 'stats', epoch, samples }));
      const sum = (k: 'received' | 'duplicates' | 'acked' | 'ackRequests' | 'ackFailures' | 'streamsOpen' | 'streamsLost' | 'badFrames') =>
        each.reduce((s, r) => s + r[k], 0);
      return {
        received: sum('received'),
        duplicates: sum('duplicates'),
        acked: sum('acked'),
        ackRequests: sum('ackRequests'),
        ackFailures: sum('ackFailures'),
        streamsOpen: sum('streamsOpen'),
        streamsLost: sum('streamsLost'),
        badFrames: sum('badFrames'),
        cpuSeconds: each.map((r) => r.cpuSeconds),
        ...(samples ? { samples: each.flatMap((r) => r.samples ?? []) } : {}),
      };
    },
    share(users, index) {
      return users.filter((_, i) => i % size === index);
    },
    async close() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.disconnect();
              setTimeout(() => c.kill('SIGKILL'), 5_000).unref();
            }),
        ),
      );
    },
  };
}
