import { round } from '../lib.js';
import type { IdleResult } from './phase-idle.js';
import type { TargetName } from './targets.js';

/*
 * `npm run bench:scale` (bench:peers --scale): how many streams each target can be asked to hold
 * on this machine, and bench/scale.md, its report.
 */

/** Descriptors a server or generator process needs besides its streams' sockets: Redis, the listener, files. */
const FD_MARGIN = 500;

export interface Limits {
  openFiles: { soft: number; hard: number };
  /** Ephemeral ports of one source address. */
  ports: number;
}

export interface Fit {
  streams: number;
  /** Why fewer than asked, if so. */
  boundBy?: string;
}

/**
 * Streams `name` can hold here out of `asked`. Over HTTP/1.1 each stream is a socket, so a file
 * descriptor, in the server and in its generator, and a source port of that generator's address;
 * the server and generators inherit the bench's open-files limit (bench/peers.sh raises it as far
 * as the hard limit lets it). Over HTTP/2 a hundred streams share one connection.
 */
export function fitStreams(name: TargetName, asked: number, generators: number, limits: Limits): Fit {
  if (name.endsWith('-h2')) return { streams: asked };
  const server = limits.openFiles.soft - FD_MARGIN;
  const perGenerator = Math.min(limits.openFiles.soft - FD_MARGIN, limits.ports);
  const fit = Math.max(0, Math.min(asked, server, perGenerator * generators));
  if (fit === asked) return { streams: asked };
  const why =
    fit === server
      ? `open files: a process may hold ${limits.openFiles.soft} (ulimit -n; hard limit ${limits.openFiles.hard}, which only root with CAP_SYS_RESOURCE can raise), and an HTTP/1.1 stream is one socket of the server`
      : `the generators: ${generators} × ${perGenerator} sockets (open files or ephemeral ports per source address)`;
  return { streams: fit, boundBy: why };
}

export interface ScaleReport {
  date: string;
  durationSeconds: number;
  machine: { cpu: string; cores: number; memoryGb: number; loadAverageBefore: number[]; loadAverageAfter: number[] };
  limits: Limits;
  versions: Record<string, string>;
  streamsAsked: number;
  fits: Array<{ target: string } & Fit>;
  idle: IdleResult[];
  failures: Array<{ phase: string; target: string; error: string }>;
  /** How the figures were taken, one sentence each. */
  notes: string[];
}

/** How the figures of a scale run are taken, for its report. */
export function scaleNotes(generators: number): string[] {
  return [
    'Each target is started fresh, with its own redis-server where it has one (appendonly yes, appendfsync everysec), and stopped after.',
    'postbox: NODE_ENV=production, LOG_LEVEL=warn, defaults but MAX_STREAMS_PER_NODE and HTTP_MAX_CONNECTIONS (config.serverEnv) and STREAM_OPENS_PER_ADDRESS=0 (each generator stands for thousands of browsers behind one address).',
    'Every stream is its own user with its own token, signed by the generator with the TOKEN_SECRET the bench gave the server (what POST /v1/tokens signs), before the measurement.',
    `Generators: ${generators} processes, generator i connecting from 127.0.0.(2+i); opens paced at openRate/s all together, at most openInflight unanswered per generator.`,
    'RSS per stream: VmRSS after opening and a settle (config.idle.settleMs), minus VmRSS before opening, divided by the streams open; V8 heap likewise from postbox_nodejs_heap_size_used_bytes.',
    'CPU: utime+stime from /proc/<pid>/stat, over the opening (per stream opened) and over a quiet window of config.idle.windowMs (one HEARTBEAT_MS: every stream is pinged about once in it).',
    'Nchan: nginx with libnginx-mod-nchan, 1 worker, a channel per user, nchan_eventsource_ping_interval 15 (postbox pings every HEARTBEAT_MS, 15 s; Nchan by default never); listen backlog 4096 (postbox\'s HTTP_LISTEN_BACKLOG default), worker_connections 200,000 (Nchan takes more connection slots than it has streams); Redis storage via nchan_redis_server. No tokens: the channel id is in the URL.',
    'HTTP/2 targets: TLS (a self-signed P-256 certificate), 100 streams to a connection, as a browser puts every tab of an origin on one; generators hold streams only there.',
  ];
}

const LABELS: Record<string, string> = {
  postbox: 'postbox, HTTP/1.1',
  'postbox-h2': 'postbox, HTTP/2 (100 streams a connection)',
  'nchan-memory': 'Nchan, memory, HTTP/1.1',
  'nchan-memory-h2': 'Nchan, memory, HTTP/2 (100 streams a connection)',
  'nchan-redis': 'Nchan, Redis, HTTP/1.1',
};

const fmt = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(round(v));
};

export function renderScale(report: ScaleReport): string {
  const rows: Array<[string, (r: IdleResult) => string]> = [
    ['streams asked → open at the end', (r) => `${fmt(r.streamsAsked)} → ${fmt(r.streams)}`],
    ['opens offered / achieved per s', (r) => `${r.open.offeredPerSecond === 0 ? 'unpaced' : fmt(r.open.offeredPerSecond)} / ${fmt(r.open.achievedPerSecond)}`],
    ['time to open them all, s', (r) => fmt(r.openSeconds)],
    ['open: request → 200, p50 / p99 / max ms', (r) => `${fmt(r.open.ms.p50)} / ${fmt(r.open.ms.p99)} / ${fmt(r.open.ms.max)}`],
    ['opening: server / Redis CPU µs per stream', (r) => `${fmt(r.open.cpuUsPerOpen.server)} / ${fmt(r.open.cpuUsPerOpen.redis)}`],
    ['opening: server / Redis CPU ms/s', (r) => `${fmt(r.open.cpuMsPerSecond.server)} / ${fmt(r.open.cpuMsPerSecond.redis)}`],
    ['opening: generators CPU µs per stream', (r) => fmt(r.open.cpuUsPerOpen.generators)],
    ['opening: other work on the machine, cores', (r) => fmt(r.open.otherCores)],
    ['opens failed', (r) => (r.open.failed === 0 ? '0' : `${fmt(r.open.failed)} (${Object.entries(r.open.errors).map(([k, n]) => `${k}: ${n}`).join(', ')})`)],
    ['streams lost after opening', (r) => fmt(r.streamsLost)],
    ['streams open by postbox\'s own count (postbox_streams_open)', (r) => fmt(r.inside?.after.streamsOpen)],
    ['server RSS before → after opening, MB', (r) => `${fmt(r.rssMb.serverBefore)} → ${fmt(r.rssMb.serverAfter)}`],
    ['server RSS per stream, bytes', (r) => fmt(r.rssBytesPerStream.server)],
    ['of which V8 heap per stream, bytes', (r) => fmt(r.inside?.heapBytesPerStream)],
    ['Redis RSS per stream, bytes', (r) => fmt(r.rssBytesPerStream.redis)],
    ['idle: server CPU ms/s', (r) => fmt(r.cpuMsPerSecond.server)],
    ['idle: Redis CPU ms/s', (r) => fmt(r.cpuMsPerSecond.redis)],
    [
      'idle: server + Redis µs/s per 1,000 streams',
      (r) => fmt(r.cpuUsPerSecondPer1kStreams.server + (r.cpuUsPerSecondPer1kStreams.redis ?? 0)),
    ],
    ['idle: generators CPU ms/s, all together', (r) => fmt(r.cpuMsPerSecond.generators.reduce((s, c) => s + c, 0))],
    ['idle window, s', (r) => fmt(r.windowSeconds)],
    ['machine busy cores in the window', (r) => fmt(r.machineBusyCores)],
    ['of which other work on the machine, cores', (r) => fmt(r.otherCores)],
  ];
  const m = report.machine;
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const out: string[] = [];
  out.push(`# Idle streams on one node: ${report.date.slice(0, 10)}`);
  out.push('');
  out.push(
    `${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB; load average ${m.loadAverageBefore.join(' ')} before, ${m.loadAverageAfter.join(' ')} after; ` +
      `open files ${report.limits.openFiles.soft} (hard ${report.limits.openFiles.hard}), ${fmt(report.limits.ports)} ephemeral ports per source address; ` +
      Object.entries(report.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') +
      `; ${report.durationSeconds} s.`,
  );
  out.push('');
  out.push(line(['', ...report.idle.map((r) => LABELS[r.target] ?? r.target)]));
  out.push(line(['---', ...report.idle.map(() => '---:')]));
  for (const [label, cell] of rows) out.push(line([label, ...report.idle.map(cell)]));
  const bounded = report.fits.filter((f) => f.boundBy !== undefined);
  if (bounded.length > 0) {
    out.push('');
    for (const f of bounded) {
      out.push(`- ${LABELS[f.target] ?? f.target}: ${fmt(f.streams)} of the ${fmt(report.streamsAsked)} streams asked, bound by ${f.boundBy}.`);
    }
  }
  if (report.failures.length > 0) {
    out.push('');
    for (const f of report.failures) out.push(`- failed: ${f.phase} / ${f.target}: ${f.error}`);
  }
  out.push('');
  out.push('How: `npm run bench:scale` (bench/peers.ts --scale, bench/peers/phase-idle.ts).');
  out.push('');
  for (const note of report.notes) out.push(`- ${note}`);
  return out.join('\n') + '\n';
}
