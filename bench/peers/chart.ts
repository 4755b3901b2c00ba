import { round } from '../lib.js';
import type { LatencyResult } from './phase-latency.js';
import type { PeersReport } from './report.js';
import { TARGETS } from './targets.js';

/* bench/peers.svg: grouped bars, hand-written SVG. Left: CPU µs per message; right: latency ms. */

interface Series {
  label: string;
  colour: string;
  pick: (r: LatencyResult) => number | null;
}

const WIDTH = 860;
const HEIGHT = 400;
const PANEL_W = 380;
const PLOT_H = 230;
const TOP = 70;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Mean over the rounds; null when the target has no such figure (no Redis). */
function mean(report: PeersReport, target: string, pick: (r: LatencyResult) => number | null): number | null {
  const values = report.latency
    .filter((r) => r.target === target)
    .map(pick)
    .filter((v): v is number => v !== null && Number.isFinite(v));
  return values.length === 0 ? null : values.reduce((s, v) => s + v, 0) / values.length;
}

/** A "nice" axis maximum at or above `v`: 1, 2 or 5 times a power of ten. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

/** A linear axis from 0, or a log axis over whole decades (latency spans 0.5 ms to seconds). */
function scale(values: number[], log: boolean): { y: (v: number) => number; ticks: number[] } {
  const bottom = TOP + PLOT_H;
  if (!log) {
    const max = niceMax(Math.max(...values, 0));
    return { y: (v) => bottom - (v / max) * PLOT_H, ticks: [0, 1, 2, 3, 4].map((i) => (max * i) / 4) };
  }
  const positive = values.filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...positive, 1)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...positive, 1))));
  const y = (v: number) => bottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * PLOT_H;
  return { y, ticks: Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i)) };
}

function panel(report: PeersReport, x0: number, title: string, unit: string, series: Series[], targets: string[], log: boolean): string {
  const values = targets.map((t) => series.map((s) => mean(report, t, s.pick)));
  const { y, ticks } = scale(values.flat().filter((v): v is number => v !== null), log);
  const groupW = PANEL_W / Math.max(1, targets.length);
  const barW = Math.min(28, (groupW - 16) / series.length);
  const parts: string[] = [];
  parts.push(`<text x="${x0}" y="${TOP - 28}" class="title">${esc(title)}</text>`);
  for (const v of ticks) {
    parts.push(`<line x1="${x0}" x2="${x0 + PANEL_W}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`);
    parts.push(`<text x="${x0 - 6}" y="${y(v) + 4}" class="axis" text-anchor="end">${round(v)}</text>`);
  }
  parts.push(`<text x="${x0 - 6}" y="${TOP - 10}" class="axis" text-anchor="end">${esc(unit)}</text>`);
  targets.forEach((t, ti) => {
    const gx = x0 + ti * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = values[ti]?.[si] ?? null;
      const bx = gx + si * barW;
      const cx = bx + (barW - 2) / 2;
      if (v === null) {
        parts.push(`<text x="${cx}" y="${TOP + PLOT_H - 4}" class="axis" text-anchor="middle">n/a</text>`);
        return;
      }
      parts.push(`<rect x="${bx}" y="${y(v)}" width="${barW - 2}" height="${TOP + PLOT_H - y(v)}" fill="${s.colour}"/>`);
      parts.push(`<text x="${cx}" y="${y(v) - 4}" class="value" text-anchor="middle">${round(v)}</text>`);
    });
    parts.push(`<text x="${x0 + ti * groupW + groupW / 2}" y="${TOP + PLOT_H + 18}" class="label" text-anchor="middle">${esc(t)}</text>`);
    // Sends the open loop skipped: the target did not take the offered rate in that run.
    const sent = mean(report, t, (r) => (100 * r.accepted) / Math.max(1, r.scheduled));
    if (sent !== null && sent < 99.5) {
      parts.push(`<text x="${x0 + ti * groupW + groupW / 2}" y="${TOP + PLOT_H + 30}" class="warn" text-anchor="middle">${round(sent)}% sent</text>`);
    }
  });
  series.forEach((s, si) => {
    const lx = x0 + si * 120;
    parts.push(`<rect x="${lx}" y="${TOP + PLOT_H + 40}" width="12" height="12" fill="${s.colour}"/>`);
    parts.push(`<text x="${lx + 16}" y="${TOP + PLOT_H + 50}" class="label">${esc(s.label)}</text>`);
  });
  return parts.join('\n');
}

export function renderChart(report: PeersReport): string {
  const targets = TARGETS.filter((t) => report.latency.some((r) => r.target === t));
  const cpu: Series[] = [
    { label: 'server', colour: '#3b6ea8', pick: (r) => r.cpuUsPerMessage.server },
    { label: 'Redis', colour: '#c8553d', pick: (r) => r.cpuUsPerMessage.redis },
  ];
  const latency: Series[] = [
    { label: 'p50', colour: '#7fa7cf', pick: (r) => r.latencyMs.p50 },
    { label: 'p99', colour: '#1f4e79', pick: (r) => r.latencyMs.p99 },
  ];
  const m = report.machine;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">
<style>
  .title { font-size: 14px; font-weight: bold; fill: #222; }
  .axis { font-size: 10px; fill: #666; }
  .label { font-size: 11px; fill: #333; }
  .value { font-size: 10px; fill: #222; }
  .note { font-size: 10px; fill: #777; }
  .warn { font-size: 10px; fill: #b03a2e; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="20" class="title">1,000 users, 1,000 msgs/s of 64 bytes, each acked where the server takes acks (mean of rounds)</text>
${panel(report, 60, 'CPU µs per message', 'µs', cpu, targets, false)}
${panel(report, 60 + PANEL_W + 60, 'enqueue → receive latency (log scale)', 'ms', latency, targets, true)}
<text x="20" y="${HEIGHT - 22}" class="note">"n% sent": the open loop skipped the rest, finding 64 requests per generator unanswered (the server behind, or the machine starved).</text>
<text x="20" y="${HEIGHT - 8}" class="note">${esc(`${report.date.slice(0, 10)}; ${m.cpu}, ${m.cores} cores; load ${m.loadAverageBefore.join(' ')} before, ${m.loadAverageAfter.join(' ')} after; npm run bench:peers`)}</text>
</svg>
`;
}
