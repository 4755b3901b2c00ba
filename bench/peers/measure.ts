import { round, sleep } from '../lib.js';
import type { GeneratorPool, PoolStats } from './generator-pool.js';
import { machineCpu, sample, type ProcSample } from './proc.js';
import type { CommandStats, RunningTarget } from './targets.js';

/* Readings around a measured window: CPU and memory of server, Redis and generators, by pid. */

export interface Snapshot {
  server: ProcSample;
  redis: ProcSample | undefined;
  /** CPU seconds of each generator. */
  generators: number[];
  /** Busy and total CPU seconds of the whole machine (all cores). */
  machine: { busy: number; total: number };
  /** CPU seconds of this process, the bench's conductor. */
  conductor: number;
  /** What the target's Redis has run so far (INFO commandstats), if it has one. */
  redisCommands: CommandStats | undefined;
  /** Ids the server said it acked so far, all generators. */
  acked: number;
}

/** The cost of a window, per message where `messages` > 0. */
export interface WindowFigures {
  seconds: number;
  /** CPU µs per message. */
  cpuUsPerMessage: { server: number; redis: number | null; generators: number };
  /** CPU ms per second of the window (1000 = one core). */
  cpuMsPerSecond: { server: number; redis: number | null; generators: number[] };
  /** Cores busy machine-wide over the window, everything included (other work on the machine too). */
  machineBusyCores: number;
  /** Cores busy with anything but the target, its Redis and the bench: the machine's noise in this window. */
  otherCores: number;
  /** Read and write system calls per message (socket I/O mostly): what a server does per message, independent of CPU speed. */
  ioCallsPerMessage: { server: number; redis: number | null };
  /** Redis commands per message (INFO's own INFO calls included, a handful per window). */
  redisCommandsPerMessage: number | null;
  /**
   * PUBLISH and SPUBLISH per message, from scripts too, and the µs Redis spent in them (INFO
   * commandstats: the command itself, not the later socket writes to the subscribers).
   */
  redisPublish: { perMessage: number; usPerMessage: number } | null;
  /** Resident memory at the end of the window, MB. */
  rssMb: { server: number; redis: number | null };
}

export async function snapshot(target: RunningTarget, pool: GeneratorPool): Promise<Snapshot> {
  const stats = await pool.stats(-1);
  return {
    server: sample(target.serverPids()),
    redis: target.redisPids.length === 0 ? undefined : sample(target.redisPids),
    generators: stats.cpuSeconds,
    machine: machineCpu(),
    conductor: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    redisCommands: await target.redisCommands(),
    acked: stats.acked,
  };
}

/** Calls and µs of the commands `names` (all when undefined) between two readings. */
function commandDelta(before: CommandStats, after: CommandStats, names?: readonly string[]): { calls: number; usec: number } {
  let calls = 0;
  let usec = 0;
  for (const [name, a] of after) {
    if (names !== undefined && !names.includes(name)) continue;
    calls += a.calls - (before.get(name)?.calls ?? 0);
    usec += a.usec - (before.get(name)?.usec ?? 0);
  }
  return { calls, usec };
}

export function figures(before: Snapshot, after: Snapshot, messages: number): WindowFigures {
  const seconds = after.server.at - before.server.at;
  const perMsg = (cpu: number) => (messages > 0 ? round((cpu * 1e6) / messages) : Number.NaN);
  const perSec = (cpu: number) => round((cpu * 1000) / seconds);
  const redisCpu = after.redis !== undefined && before.redis !== undefined ? after.redis.cpuSeconds - before.redis.cpuSeconds : undefined;
  const genCpu = after.generators.map((c, i) => c - (before.generators[i] ?? 0));
  const commands =
    after.redisCommands !== undefined && before.redisCommands !== undefined && messages > 0
      ? { before: before.redisCommands, after: after.redisCommands }
      : undefined;
  const publish = commands && commandDelta(commands.before, commands.after, ['publish', 'spublish']);
  return {
    seconds: round(seconds),
    cpuUsPerMessage: {
      server: perMsg(after.server.cpuSeconds - before.server.cpuSeconds),
      redis: redisCpu === undefined ? null : perMsg(redisCpu),
      generators: perMsg(genCpu.reduce((s, c) => s + c, 0)),
    },
    cpuMsPerSecond: {
      server: perSec(after.server.cpuSeconds - before.server.cpuSeconds),
      redis: redisCpu === undefined ? null : perSec(redisCpu),
      generators: genCpu.map(perSec),
    },
    ioCallsPerMessage: {
      server: messages > 0 ? round((after.server.ioCalls - before.server.ioCalls) / messages) : Number.NaN,
      redis:
        after.redis !== undefined && before.redis !== undefined && messages > 0
          ? round((after.redis.ioCalls - before.redis.ioCalls) / messages)
          : null,
    },
    redisCommandsPerMessage: commands ? round(commandDelta(commands.before, commands.after).calls / messages) : null,
    redisPublish: publish ? { perMessage: round(publish.calls / messages), usPerMessage: round(publish.usec / messages) } : null,
    machineBusyCores: round((after.machine.busy - before.machine.busy) / seconds),
    otherCores: round(
      Math.max(
        0,
        after.machine.busy -
          before.machine.busy -
          (after.server.cpuSeconds - before.server.cpuSeconds) -
          (redisCpu ?? 0) -
          genCpu.reduce((s, c) => s + c, 0) -
          (after.conductor - before.conductor),
      ) / seconds,
    ),
    rssMb: {
      server: round(after.server.rssBytes / 2 ** 20),
      redis: after.redis === undefined ? null : round(after.redis.rssBytes / 2 ** 20),
    },
  };
}

/**
 * Waits until the generators have received `expected` messages of `epochs`
 * and, when `ackedFrom` is set, the server has acked as many since then
 * (postbox answers each ack with the count it took). Polls every 50 ms, gives
 * up at `deadlineMs`. Then waits `graceMs` more, so the last acks (sent at
 * most 100 ms after a receipt) fall in the window for every target alike.
 */
export async function settle(
  pool: GeneratorPool,
  epochs: readonly number[],
  expected: number,
  options: { ackedFrom?: number; deadlineMs: number; graceMs?: number },
): Promise<{ complete: boolean; received: number; duplicates: number; acked: number | null; last: PoolStats; ms: number }> {
  const start = performance.now();
  const read = async () => {
    const each = await Promise.all(epochs.map((e) => pool.stats(e)));
    return {
      received: each.reduce((s, r) => s + r.received, 0),
      duplicates: each.reduce((s, r) => s + r.duplicates, 0),
      acked: each[0]?.acked ?? 0,
    };
  };
  let now = await read();
  const done = () => now.received >= expected && (options.ackedFrom === undefined || now.acked - options.ackedFrom >= now.received);
  while (!done() && performance.now() - start <= options.deadlineMs) {
    await sleep(50);
    now = await read();
  }
  const ms = performance.now() - start;
  await sleep(options.graceMs ?? 250);
  const final = await pool.stats(-1);
  const { received, duplicates } = now;
  return {
    complete: done(),
    received,
    duplicates,
    acked: options.ackedFrom === undefined ? null : final.acked - options.ackedFrom,
    last: final,
    ms: round(ms),
  };
}
