import { round } from '../lib.js';
import type { IdleResult } from './phase-idle.js';
import type { LatencyResult } from './phase-latency.js';
import type { SaturationResult } from './phase-saturation.js';
import { TARGETS } from './targets.js';

/* The Markdown report of `npm run bench:peers`: one row per figure, one column per target. */

export interface PeersReport {
  date: string;
  durationSeconds: number;
  machine: { cpu: string; cores: number; loadAverageBefore: number[]; loadAverageAfter: number[] };
  versions: Record<string, string>;
  latency: LatencyResult[];
  saturation: SaturationResult[];
  idle: IdleResult[];
  failures: Array<{ phase: string; target: string; error: string }>;
}

/** A figure for a table: thousands separated from 1,000 up, 3 significant digits below; — when missing. */
export const fmt = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(round(v));
};

const mean = (values: number[]): number | null => (values.length === 0 ? null : values.reduce((s, v) => s + v, 0) / values.length);

/** Per target: the rounds' values of `pick`, shown `a · b`, and their mean for the ratio. */
function perRound(report: PeersReport, pick: (r: LatencyResult) => number | null) {
  return (target: string) => {
    const values = report.latency
      .filter((r) => r.target === target)
      .sort((a, b) => a.round - b.round)
      .map(pick)
      .filter((v): v is number => v !== null && Number.isFinite(v));
    return { text: values.length === 0 ? '—' : values.map(fmt).join(' · '), value: mean(values) };
  };
}

type Cell = (target: string) => { text: string; value: number | null };

function single<T extends { target: string }>(rows: T[], pick: (r: T) => number | null | undefined, text?: (r: T) => string): Cell {
  return (target) => {
    const r = rows.find((x) => x.target === target);
    if (r === undefined) return { text: '—', value: null };
    const v = pick(r) ?? null;
    return { text: text ? text(r) : fmt(v), value: v };
  };
}

function busiestGenerator(r: LatencyResult): number {
  // ms of CPU per s = tenths of a percent of one core.
  return Math.max(...r.cpuMsPerSecond.generators) / 10;
}

/** One row per figure; the last column is postbox ÷ Nchan-Redis. */
export function renderTable(report: PeersReport): string {
  const L = (pick: (r: LatencyResult) => number | null) => perRound(report, pick);
  const sumCpu = (r: LatencyResult) => r.cpuUsPerMessage.server + (r.cpuUsPerMessage.redis ?? 0);
  const accounted = (r: LatencyResult) =>
    `${r.accepted.toLocaleString('en-US')} / ${r.received.toLocaleString('en-US')}` +
    (r.acked === null ? '' : ` / ${r.acked.toLocaleString('en-US')}`) +
    (r.notSent + r.failed > 0 ? ` (${r.notSent} not sent, ${r.failed} failed)` : '');
  const firstRound = report.latency.filter((r) => r.round === 1);
  const rows: Array<[string, Cell]> = [
    ['server CPU µs per message, 1,000 msgs/s (round 1 · 2)', L((r) => r.cpuUsPerMessage.server)],
    ['Redis CPU µs per message, 1,000 msgs/s', L((r) => r.cpuUsPerMessage.redis)],
    ['server + Redis CPU µs per message', L(sumCpu)],
    ['server read/write-family syscalls per message ¹', L((r) => r.ioCallsPerMessage.server)],
    ['Redis commands per message, inside scripts too', L((r) => r.redisCommandsPerMessage)],
    ['enqueue → receive p50 ms', L((r) => r.latencyMs.p50)],
    ['enqueue → receive p99 ms', L((r) => r.latencyMs.p99)],
    ['enqueue → receive p99.9 ms', L((r) => r.latencyMs.p999)],
    ['sent / received (/ acked), round 1', single(firstRound, (r) => r.lost, accounted)],
    ['lost (sent, never received), all rounds', L((r) => r.lost)],
    ['server RSS MB after the phase', L((r) => r.rssMb.server)],
    ['busiest generator, % of a core', L(busiestGenerator)],
    ['generator lag behind schedule p99 ms', L((r) => r.generatorLagP99Ms)],
    ['machine busy cores in the window', L((r) => r.machineBusyCores)],
    ['of which other work on the machine, cores', L((r) => r.otherCores)],
    ['saturation, one POST per message, msgs/s', single(report.saturation, (r) => r.bestSingle)],
    ['saturation, batch route (100 per POST), msgs/s', single(report.saturation, (r) => r.bestBatch)],
    [
      'saturation sent / received (lost)',
      single(report.saturation, (r) => r.lost, (r) => `${fmt(r.sent)} / ${fmt(r.received)} (${r.lost})`),
    ],
    ['idle: server RSS per open stream, bytes', single(report.idle, (r) => r.rssBytesPerStream.server)],
    ['idle: Redis RSS per open stream, bytes', single(report.idle, (r) => r.rssBytesPerStream.redis)],
    ['idle: server CPU ms/s, 10,000 streams', single(report.idle, (r) => r.cpuMsPerSecond.server)],
    ['idle: Redis CPU ms/s, 10,000 streams', single(report.idle, (r) => r.cpuMsPerSecond.redis)],
    ['idle: other work on the machine, cores', single(report.idle, (r) => r.otherCores)],
  ];
  const targets = TARGETS.filter(
    (t) => report.latency.some((r) => r.target === t) || report.saturation.some((r) => r.target === t) || report.idle.some((r) => r.target === t),
  );
  const ratio = targets.includes('postbox') && targets.includes('nchan-redis');
  const head = ['', ...targets, ...(ratio ? ['postbox / Nchan-Redis'] : [])];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const out: string[] = [];
  const m = report.machine;
  out.push(`# postbox beside its peers: ${report.date.slice(0, 10)}`);
  out.push('');
  out.push(
    `${m.cpu}, ${m.cores} cores; load average ${m.loadAverageBefore.join(' ')} before, ${m.loadAverageAfter.join(' ')} after; ` +
      Object.entries(report.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') +
      `; ${report.durationSeconds} s.`,
  );
  out.push('');
  out.push(line(head));
  out.push(line(head.map((_, i) => (i === 0 ? '---' : '---:'))));
  for (const [label, cell] of rows) {
    const cells = targets.map((t) => cell(t));
    const p = cell('postbox').value;
    const n = cell('nchan-redis').value;
    const r = ratio && p !== null && n !== null && n !== 0 ? `${fmt(p / n)}×` : '—';
    out.push(line([label, ...cells.map((c) => c.text), ...(ratio ? [r] : [])]));
  }
  out.push('');
  out.push(
    '¹ syscr + syscw of /proc/<pid>/io: read, readv, write, writev and the like, not recv or send. Node and Redis read sockets ' +
      'with read(), nginx with recv(), so Nchan\'s count holds its writes only.',
  );
  out.push('');
  out.push('Saturation steps (closed loop, 1,000 streams open):');
  out.push('');
  out.push(
    line(['target', 'route', 'concurrency', 'msgs/s', 'server µs/msg', 'Redis µs/msg', 'busiest generator %', 'machine cores', 'other work, cores']),
  );
  out.push(line(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const s of report.saturation) {
    for (const st of s.steps) {
      out.push(
        line([
          s.target,
          st.route === 'batch' ? `batch of ${st.batchSize}` : 'single',
          String(st.concurrency),
          fmt(st.perSecond),
          fmt(st.cpuUsPerMessage.server),
          fmt(st.cpuUsPerMessage.redis),
          fmt(Math.max(...st.cpuMsPerSecond.generators) / 10),
          fmt(st.machineBusyCores),
          fmt(st.otherCores),
        ]),
      );
    }
  }
  if (report.failures.length > 0) {
    out.push('');
    for (const f of report.failures) out.push(`- failed: ${f.phase} / ${f.target}: ${f.error}`);
  }
  return out.join('\n') + '\n';
}
