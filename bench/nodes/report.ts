import { round } from '../lib.js';
import type { LatencyResult, Tabs } from '../peers/phase-latency.js';
import type { SaturationResult, SaturationStep } from '../peers/phase-saturation.js';
import { fmt } from '../peers/report.js';

/* The Markdown report of `npm run bench:nodes`: a row per configuration, then the wake cost. */

export interface Scenario {
  /** postbox processes. */
  nodes: number;
  /** One redis-server, or a Redis Cluster of 3 masters. */
  redis: 'single' | 'cluster';
  tabs: Tabs;
}

export interface ScenarioResult extends Scenario {
  /** At the fixed offered rate. */
  latency: LatencyResult;
  /** CPU with the streams open and no messages, ms per second, summed over the nodes and over the masters. */
  quiet: { server: number; redis: number };
  saturation: SaturationResult;
  /** Nodes up and ready, s; null where the configuration ran on the nodes of the one before. */
  startSeconds: number | null;
  /** Lines the nodes logged at warn or above, so far (the nodes of a node count are shared by its placements). */
  logLines: number;
}

export interface NodesReport {
  date: string;
  durationSeconds: number;
  quick: boolean;
  machine: { cpu: string; cores: number; loadAverageBefore: number[]; loadAverageAfter: number[] };
  versions: Record<string, string>;
  config: { latency: { rate: number; users: number; durationMs: number }; generators: number; quietMs: number } & Record<string, unknown>;
  results: ScenarioResult[];
  /** Configurations not started: the run's time budget was spent. */
  skipped: string[];
  failures: Array<{ scenario: string; error: string }>;
}

export function scenarioLabel(s: Scenario): string {
  const redis = s.redis === 'single' ? 'one Redis' : 'Redis Cluster (3 masters)';
  const tabs = s.nodes === 1 ? 'one stream per user' : s.tabs === 'one' ? 'one stream per user' : 'a tab on every node';
  return `${s.nodes} node${s.nodes === 1 ? '' : 's'}, ${redis}, ${tabs}`;
}

/** The single-POST step that got the most acked per second. */
function bestStep(s: SaturationResult): SaturationStep | undefined {
  return s.steps.filter((st) => st.route === 'single').sort((a, b) => (b.ackedPerSecond ?? 0) - (a.ackedPerSecond ?? 0))[0];
}

const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
const align = (n: number) => line(Array.from({ length: n }, (_, i) => (i < 3 ? '---' : '---:')));
const redisName = (r: Scenario['redis']) => (r === 'single' ? 'one' : 'cluster');
const tabsName = (r: Scenario) => (r.nodes === 1 ? 'one' : r.tabs === 'one' ? 'one' : 'every node');

function accounted(r: ScenarioResult): string {
  const l = r.latency;
  const s = r.saturation;
  const lost = l.lost + s.lost;
  return `${fmt(l.accepted + s.sent)} / ${fmt(l.received + s.received)} / ${fmt((l.acked ?? 0) + (s.acked ?? 0))}${lost > 0 ? ` (${lost} lost)` : ''}`;
}

function mainTable(report: NodesReport): string[] {
  const rate = fmt(report.config.latency.rate);
  const head = [
    'nodes',
    'Redis',
    'tabs',
    'saturation: delivered and acked msgs/s',
    'saturation: CPU µs/msg, server / Redis',
    'saturation: msgs/s per core of server + Redis CPU',
    `${rate} msgs/s: enqueue→receive p50 / p99 ms (other work, cores)`,
    `${rate} msgs/s: CPU µs/msg, server / Redis`,
    'sent / received / acked (both phases)',
    'saturation: machine busy cores (other work)',
  ];
  const out = [line(head), align(head.length)];
  for (const r of report.results) {
    const st = bestStep(r.saturation);
    const l = r.latency;
    out.push(
      line([
        String(r.nodes),
        redisName(r.redis),
        tabsName(r),
        `${fmt(st?.ackedPerSecond)} (${fmt(st?.perSecond)} POSTed)`,
        `${fmt(st?.cpuUsPerMessage.server)} / ${fmt(st?.cpuUsPerMessage.redis)}`,
        fmt(st === undefined ? undefined : 1e6 / (st.cpuUsPerMessage.server + (st.cpuUsPerMessage.redis ?? 0))),
        `${fmt(l.latencyMs.p50)} / ${fmt(l.latencyMs.p99)} (${fmt(l.otherCores)})`,
        `${fmt(l.cpuUsPerMessage.server)} / ${fmt(l.cpuUsPerMessage.redis)}`,
        accounted(r),
        `${fmt(st?.machineBusyCores)} (${fmt(st?.otherCores)})`,
      ]),
    );
  }
  return out;
}

/**
 * At the fixed rate, per Redis and placement: what the publishes cost Redis
 * (commandstats) and how the CPU per message moves from 1 node to 2 and 3;
 * beside it the quiet background of the nodes (drain ticks, heartbeats, BullMQ).
 */
function wakeTable(report: NodesReport): string[] {
  const head = [
    'Redis',
    'tabs',
    'nodes',
    'SPUBLISH per msg',
    'µs in SPUBLISH per msg',
    'Redis commands per msg',
    'Redis CPU µs/msg (Δ vs 1 node)',
    'server CPU µs/msg (Δ vs 1 node)',
    'quiet, no messages: CPU ms/s, server / Redis',
  ];
  const out = [line(head), align(head.length)];
  const cpu = (r: ScenarioResult) => ({ server: r.latency.cpuUsPerMessage.server, redis: r.latency.cpuUsPerMessage.redis ?? 0 });
  const delta = (v: number, base: number | undefined) => (base === undefined ? '' : ` (${v - base >= 0 ? '+' : ''}${fmt(round(v - base))})`);
  for (const redis of ['single', 'cluster'] as const) {
    const one = report.results.find((r) => r.redis === redis && r.nodes === 1);
    for (const tabs of ['one', 'every-node'] as const) {
      const rows = report.results.filter((r) => r.redis === redis && r.nodes > 1 && r.tabs === tabs);
      if (rows.length === 0) continue;
      for (const r of [...(one === undefined ? [] : [one]), ...rows]) {
        const l = r.latency;
        const n = cpu(r);
        const base = one === undefined || r === one ? undefined : cpu(one);
        out.push(
          line([
            redisName(redis),
            tabs === 'one' ? 'one' : 'every node',
            String(r.nodes),
            fmt(l.redisPublish?.perMessage),
            fmt(l.redisPublish?.usPerMessage),
            fmt(l.redisCommandsPerMessage),
            `${fmt(l.cpuUsPerMessage.redis)}${delta(n.redis, base?.redis)}`,
            `${fmt(l.cpuUsPerMessage.server)}${delta(n.server, base?.server)}`,
            `${fmt(r.quiet.server)} / ${fmt(r.quiet.redis)}`,
          ]),
        );
      }
    }
  }
  return out;
}

export function renderNodesReport(report: NodesReport): string {
  const m = report.machine;
  const c = report.config;
  const out: string[] = [];
  out.push(`# postbox on 1, 2 and 3 nodes: ${report.date.slice(0, 10)}${report.quick ? ' (quick run: not for the record)' : ''}`);
  out.push('');
  out.push(
    `${m.cpu}, ${m.cores} cores, shared with other work; load average ${m.loadAverageBefore.join(' ')} before, ` +
      `${m.loadAverageAfter.join(' ')} after; ` +
      Object.entries(report.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') +
      `; ${report.durationSeconds} s.`,
  );
  out.push('');
  out.push(
    `${fmt(c.latency.users)} users, ${c.generators} load-generator processes, every process on loopback; each node count on fresh ` +
      `nodes and an emptied Redis (or cluster), its two placements one after the other on the same nodes. Single POSTs to random users through random nodes: ${fmt(c.latency.rate)} msgs/s offered ` +
      `for ${c.latency.durationMs / 1000} s, then a closed loop (saturation). Streams ack as the client library does, through their own node. ` +
      'CPU is utime + stime from /proc, summed over the nodes and over the Redis processes, per delivered-and-acked message ' +
      '(saturation: per message POSTed in the window). The machine is shared: its other work takes cores from the run, so the ' +
      'saturation rate follows the last column; msgs/s per core (1,000,000 ÷ server + Redis µs per message) reads less of it.',
  );
  out.push('');
  out.push(...mainTable(report));
  out.push('');
  out.push(
    `Wake cost at ${fmt(c.latency.rate)} msgs/s. On one node an enqueue wakes the node's own drain and publishes nothing; with more, ` +
      'an enqueue through a node that is not the only holder of the user publishes the id on the user\'s sharded channel (SPUBLISH), ' +
      'and with a tab on every node the lease holder publishes what it wrote and each ack is published too. ' +
      'µs in SPUBLISH: INFO commandstats (the command itself, not the later socket writes to the subscribers). ' +
      'Δ: the change in CPU per message against 1 node on the same Redis. Quiet: the same streams open, no messages, ' +
      `${report.config.quietMs / 1000} s (/proc counts CPU in 10 ms ticks).`,
  );
  out.push('');
  out.push(...wakeTable(report));
  const notes = [
    ...report.skipped.map((s) => `- not run (time budget): ${s}`),
    ...report.failures.map((f) => `- failed: ${f.scenario}: ${f.error}`),
    ...report.results.filter((r) => r.logLines > 0).map((r) => `- ${scenarioLabel(r)}: the nodes logged ${r.logLines} lines at warn or above`),
  ];
  if (notes.length > 0) out.push('', ...notes);
  return out.join('\n') + '\n';
}
