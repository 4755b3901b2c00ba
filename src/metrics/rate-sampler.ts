import type { Logger } from 'pino';
import type { RedisClient } from '../queue/redis.js';
import type { Counter } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Metrics } from './metrics.js';

export const RATE_NAMES = ['enqueued', 'delivered', 'redelivered', 'acked', 'dead'] as const;
export type RateName = (typeof RATE_NAMES)[number];
export type Rates = Record<RateName, number>;

export interface RateSamplerOptions {
  /** How often the counters are sampled, ms. @defaultValue 1000 */
  intervalMs?: number;
  /** Samples kept: the chart's time span is `keep × intervalMs`. @defaultValue 180 */
  keep?: number;
  /** Every this many samples the node writes its stream count to Redis. @defaultValue 5 */
  reportEvery?: number;
}

/** One node's line in `GET /admin/stats`. */
export interface NodeReport {
  node: string;
  streams: number;
  users: number;
  /** When the node last reported, epoch ms. */
  at: number;
}

export interface RateSampler {
  /** This node's name in the node reports. */
  readonly node: string;
  /** Messages per second over the last `windowMs` (or since the first sample, when younger), this node. */
  rates(windowMs?: number): Rates;
  /** Messages per second between consecutive samples, oldest first: the chart. */
  series(): Array<{ t: number } & Rates>;
  /** The nodes that reported recently, this one first; stale ones are removed. */
  nodes(): Promise<NodeReport[]>;
  close(): Promise<void>;
}

type Sample = { t: number } & Rates;

/**
 * Samples the prom-client counters of this node into a small ring, so the admin
 * can show rates over time without a Prometheus server, and writes this node's
 * open stream count to a Redis hash so any node can list all of them.
 */
export function createRateSampler(deps: {
  metrics: Metrics;
  redis: RedisClient;
  clock: Clock;
  logger: Logger;
  /** This node's id (src/node-id.ts). */
  node: string;
  /** Hash of node reports, e.g. `keys.nodes()`. */
  nodesKey: string;
  /** Open streams and connected users on this node now. */
  load(): { streams: number; users: number };
  options?: RateSamplerOptions;
}): RateSampler {
  const { metrics, redis, clock, logger, nodesKey } = deps;
  const intervalMs = deps.options?.intervalMs ?? 1000;
  const keep = deps.options?.keep ?? 180;
  const reportEvery = deps.options?.reportEvery ?? 5;
  const { node } = deps;
  const counters: Record<RateName, Counter> = {
    enqueued: metrics.enqueued,
    delivered: metrics.delivered,
    redelivered: metrics.redelivered,
    acked: metrics.acked,
    dead: metrics.dead,
  };
  const ring: Sample[] = [];
  let ticks = 0;
  let closed = false;

  async function read(): Promise<Sample> {
    const sample = { t: clock.now() } as Sample;
    for (const name of RATE_NAMES) sample[name] = (await counters[name].get()).values[0]?.value ?? 0;
    return sample;
  }

  async function report(): Promise<void> {
    if (closed) return;
    const { streams, users } = deps.load();
    await redis.hset(nodesKey, node, JSON.stringify({ streams, users, at: clock.now() }));
  }

  async function tick(): Promise<void> {
    ring.push(await read());
    if (ring.length > keep) ring.shift();
    if (ticks % reportEvery === 0) await report();
    ticks += 1;
  }

  function perSecond(from: Sample, to: Sample): Rates {
    const seconds = Math.max((to.t - from.t) / 1000, 1e-3);
    const out = {} as Rates;
    for (const name of RATE_NAMES) out[name] = Math.max(0, to[name] - from[name]) / seconds;
    return out;
  }

  const timer = clock.setInterval(() => {
    tick().catch((err: unknown) => logger.debug({ err }, 'rate sample failed'));
  }, intervalMs);
  timer.unref();
  void tick().catch(() => undefined);

  return {
    node,

    rates(windowMs = 60_000) {
      const last = ring[ring.length - 1];
      if (last === undefined) return zero();
      const from = ring.find((s) => s.t >= last.t - windowMs) ?? last;
      return from === last ? zero() : perSecond(from, last);
    },

    series() {
      const out: Array<{ t: number } & Rates> = [];
      for (let i = 1; i < ring.length; i += 1) {
        const a = ring[i - 1] as Sample;
        const b = ring[i] as Sample;
        out.push({ t: b.t, ...perSecond(a, b) });
      }
      return out;
    },

    async nodes() {
      const all = await redis.hgetall(nodesKey);
      const now = clock.now();
      const stale: string[] = [];
      const out: NodeReport[] = [];
      for (const [name, text] of Object.entries(all)) {
        const parsed = parseReport(text);
        // Three missed reports: the node is gone (crashed, or closed without saying so).
        if (parsed === undefined || now - parsed.at > 3 * reportEvery * intervalMs) stale.push(name);
        else out.push({ node: name, ...parsed });
      }
      if (stale.length > 0) await redis.hdel(nodesKey, ...stale);
      if (!closed) {
        const own = out.find((r) => r.node === node);
        const fresh = { node, ...deps.load(), at: now };
        if (own === undefined) out.push(fresh);
        else Object.assign(own, fresh);
      }
      return out.sort((a, b) => (a.node === node ? -1 : b.node === node ? 1 : a.node.localeCompare(b.node)));
    },

    async close() {
      if (closed) return;
      closed = true;
      clock.clearInterval(timer);
      await redis.hdel(nodesKey, node).catch(() => undefined);
    },
  };
}

function zero(): Rates {
  return { enqueued: 0, delivered: 0, redelivered: 0, acked: 0, dead: 0 };
}

function parseReport(text: string): { streams: number; users: number; at: number } | undefined {
  try {
    const v = JSON.parse(text) as { streams?: unknown; users?: unknown; at?: unknown };
    if (typeof v.streams === 'number' && typeof v.users === 'number' && typeof v.at === 'number') {
      return { streams: v.streams, users: v.users, at: v.at };
    }
  } catch {
    // Not ours: treated as stale and removed.
  }
  return undefined;
}
