import { round, sleep } from '../lib.js';
import type { GeneratorPool, PoolStats } from './generator-pool.js';
import { machineCpu, sample, type ProcSample } from './proc.js';
import type { RunningTarget } from './targets.js';

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
  /** Commands the target's Redis has run so far (INFO commandstats), if it has one. */
  redisCommands: number | undefined;
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
  /** Resident memory at the end of the window, MB. */
  rssMb: { server: number; redis: number | null };
}

export async function snapshot(target: RunningTarget, pool: GeneratorPool): Promise<Snapshot> {
  const stats = await pool.stats(-1);
  return {
    server: sample(target.serverPids()),
    redis: target.redisPid === undefined ? undefined : sample([target.redisPid]),
    generators: stats.cpuSeconds,
    machine: machineCpu(),
    conductor: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    redisCommands: await target.redisCommands(),
  };
}

export function figures(before: Snapshot, after: Snapshot, messages: number): WindowFigures {
  const seconds = after.server.at - before.server.at;
  const perMsg = (cpu: number) => (messages > 0 ? round((cpu * 1e6) / messages) : Number.NaN);
  const perSec = (cpu: number) => round((cpu * 1000) / seconds);
  const redisCpu = after.redis !== undefined && before.redis !== undefined ? after.redis.cpuSeconds - before.redis.cpuSeconds : undefined;
  const genCpu = after.generators.map((c, i) => c - (before.generators[i] ?? 0));
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
    redisCommandsPerMessage:
      after.redisCommands !== undefined && before.redisCommands !== undefined && messages > 0
        ? round((after.redisCommands - before.redisCommands) / messages)
        : null,
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
