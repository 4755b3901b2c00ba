import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/* CPU time and memory of a process tree, read from /proc by pid (Linux only). */

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (`getconf CLK_TCK`). */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the `(comm)`, which may itself hold spaces. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime + stime of one process, seconds; 0 once it is gone. */
function cpuSecondsOf(pid: number): number {
  const f = statFields(pid);
  // proc(5): after comm come state(3) ppid(4) … utime(14) stime(15); index 0 here is field 3.
  if (f === undefined) return 0;
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** VmRSS of one process, bytes; 0 once it is gone. */
function rssBytesOf(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? 0 : Number(match[1]) * 1024;
  } catch {
    return 0;
  }
}

/** Read and write system calls of one process so far (syscr + syscw of /proc/<pid>/io, all threads); 0 once it is gone. */
function ioCallsOf(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return field('syscr') + field('syscw');
  } catch {
    return 0;
  }
}

/** Direct children of `pid` (nginx's workers under its master). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (statFields(Number(entry))?.[1] === String(pid)) out.push(Number(entry));
  }
  return out;
}

/** One reading of a group of processes. */
export interface ProcSample {
  /** utime + stime summed over the group, seconds. */
  cpuSeconds: number;
  /** VmRSS summed over the group, bytes. */
  rssBytes: number;
  /** Read and write system calls so far (sockets, pipes, files), summed over the group. */
  ioCalls: number;
  /** process.hrtime of the reading, seconds. */
  at: number;
}

/** Reads CPU and RSS of `pids` (summed). */
export function sample(pids: readonly number[]): ProcSample {
  let cpuSeconds = 0;
  let rssBytes = 0;
  let ioCalls = 0;
  for (const pid of pids) {
    cpuSeconds += cpuSecondsOf(pid);
    rssBytes += rssBytesOf(pid);
    ioCalls += ioCallsOf(pid);
  }
  return { cpuSeconds, rssBytes, ioCalls, at: Number(process.hrtime.bigint()) / 1e9 };
}

/** The soft limit on open files of this process (`ulimit -n`). */
export function openFilesLimit(): number {
  return openFilesLimits().soft;
}

/** Soft and hard limits on open files of this process (`ulimit -n`, `ulimit -Hn`); processes it starts inherit both. */
export function openFilesLimits(): { soft: number; hard: number } {
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const value = (v: string | undefined) => (v === undefined ? 1024 : v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

/** Ephemeral ports one source address can connect from (net.ipv4.ip_local_port_range). */
export function ephemeralPorts(): number {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return (high ?? 60_999) - (low ?? 32_768) + 1;
  } catch {
    return 28_232;
  }
}

/** CPU time of the whole machine from /proc/stat, seconds: busy (not idle or iowait) and total. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // proc(5): user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
  const total = ticks.slice(0, 8).reduce((s, t) => s + t, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}
