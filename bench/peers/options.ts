import { SCALE_TARGETS, TARGETS, type TargetName } from './targets.js';

/* Command-line options of `npm run bench:peers` and `npm run bench:scale` (bench:peers --scale). */

export const PHASES = ['latency', 'saturation', 'idle'] as const;
export type PhaseName = (typeof PHASES)[number];

/** Streams of the idle phase with --scale. */
export const SCALE_STREAMS = 50_000;
/** Opens per second offered with --scale, all generators together. */
export const SCALE_OPEN_RATE = 2_500;

export interface PeersOptions {
  /** Targets to run, in this order. @defaultValue all four (with --scale: postbox, postbox-h2, nchan-memory, nchan-memory-h2) */
  targets: TargetName[];
  /** Phases to run. @defaultValue all three (with --scale: idle only) */
  phases: PhaseName[];
  /** Extra node flags for postbox (`--server-args="--cpu-prof --cpu-prof-interval=500"`). @defaultValue [] */
  serverArgs: string[];
  /** Load-generator processes. @defaultValue 4 */
  generators: number;
  /** Rounds of the 1,000 msgs/s phase, each over every target. @defaultValue 2 */
  rounds: number;
  /** Shorter windows, to try the bench out; its figures are not for the report. @defaultValue false */
  quick: boolean;
  /**
   * The scale run: the idle phase alone, at `streams` (50,000) opened at `openRate` (2,500/s) on
   * one node, written to bench/scale-results.json and bench/scale.md. @defaultValue false
   */
  scale: boolean;
  /** Streams of the idle phase. @defaultValue 10000 (2000 with --quick; 50000 with --scale) */
  streams: number | undefined;
  /** Opens per second the idle phase offers, all generators together; 0: as fast as they go. @defaultValue 0 (2500 with --scale) */
  openRate: number | undefined;
  /** Where the results go. @defaultValue bench/ for a full run, a temp dir otherwise */
  out: string | undefined;
  /** True when every default target and phase runs at the default sizes (the figures the checkout keeps). */
  full: boolean;
}

const USAGE = `usage: npm run bench:peers -- [--only postbox,nchan-memory,nchan-redis,naive] [--phase latency,saturation,idle]
       [--server-args="--cpu-prof"] [--generators 4] [--rounds 2] [--streams 10000] [--open-rate 0] [--quick] [--out DIR]
       npm run bench:scale -- [--only postbox,postbox-h2,nchan-memory,nchan-memory-h2,nchan-redis] [--streams 50000] [--open-rate 2500]
       [--generators 4] [--server-args=…] [--out DIR]   (bench:scale is bench:peers --scale)`;

function list<T extends string>(value: string, allowed: readonly T[], what: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) if (!allowed.includes(item as T)) throw new Error(`unknown ${what} ${item}\n${USAGE}`);
  return items as T[];
}

function count(value: string, name: string, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`${name} takes a whole number from 0 to ${max}\n${USAGE}`);
  return n;
}

export function parseOptions(argv: readonly string[]): PeersOptions {
  const o: PeersOptions = {
    targets: [],
    phases: [...PHASES],
    serverArgs: [],
    generators: 4,
    rounds: 2,
    quick: false,
    scale: false,
    streams: undefined,
    openRate: undefined,
    out: undefined,
    full: true,
  };
  let only: string | undefined;
  let phase: string | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq > 0 ? arg.slice(eq + 1) : (argv[++i] ?? ''));
    switch (name) {
      case '--only':
        only = value();
        break;
      case '--phase':
        phase = value();
        break;
      case '--server-args':
        o.serverArgs.push(...value().split(/\s+/).filter((s) => s !== ''));
        break;
      case '--generators':
        o.generators = Math.max(1, Math.min(16, Number(value()) || 4));
        break;
      case '--rounds':
        o.rounds = Math.max(1, Math.min(4, Number(value()) || 2));
        break;
      case '--streams':
        o.streams = Math.max(1, count(value(), '--streams', 1_000_000));
        break;
      case '--open-rate':
        o.openRate = count(value(), '--open-rate', 100_000);
        break;
      case '--quick':
        o.quick = true;
        break;
      case '--scale':
        o.scale = true;
        break;
      case '--out':
        o.out = value();
        break;
      case '--help':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${arg}\n${USAGE}`);
    }
  }
  const allowed: readonly TargetName[] = o.scale ? SCALE_TARGETS : TARGETS;
  // nchan-redis opens at a few hundred a second here: with it a scale run would pass 5 minutes.
  const defaults = o.scale ? allowed.filter((t) => t !== 'nchan-redis') : allowed;
  o.targets = only === undefined ? [...defaults] : list(only, allowed, 'target');
  if (o.scale && phase !== undefined) throw new Error(`--scale runs the idle phase only\n${USAGE}`);
  o.phases = o.scale ? ['idle'] : phase === undefined ? [...PHASES] : list(phase, PHASES, 'phase');
  const sizes = o.streams === undefined && o.openRate === undefined;
  o.full = only === undefined && phase === undefined && !o.quick && sizes;
  return o;
}
