import { TARGETS, type TargetName } from './targets.js';

/* Command-line options of `npm run bench:peers`. */

export const PHASES = ['latency', 'saturation', 'idle'] as const;
export type PhaseName = (typeof PHASES)[number];

export interface PeersOptions {
  /** Targets to run, in this order. @defaultValue all four */
  targets: TargetName[];
  /** Phases to run. @defaultValue all three */
  phases: PhaseName[];
  /** Extra node flags for postbox (`--server-args="--cpu-prof --cpu-prof-interval=500"`). @defaultValue [] */
  serverArgs: string[];
  /** Load-generator processes. @defaultValue 4 */
  generators: number;
  /** Rounds of the 1,000 msgs/s phase, each over every target. @defaultValue 2 */
  rounds: number;
  /** Shorter windows, to try the bench out; its figures are not for the report. @defaultValue false */
  quick: boolean;
  /** Where peers.json, peers.md and peers.svg go. @defaultValue bench/ for a full run, a temp dir otherwise */
  out: string | undefined;
  /** True when every target and phase runs (the figures the checkout keeps). */
  full: boolean;
}

const USAGE = `usage: npm run bench:peers -- [--only postbox,nchan-memory,nchan-redis,naive] [--phase latency,saturation,idle]
       [--server-args="--cpu-prof"] [--generators 4] [--rounds 2] [--quick] [--out DIR]`;

function list<T extends string>(value: string, allowed: readonly T[], what: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) if (!allowed.includes(item as T)) throw new Error(`unknown ${what} ${item}\n${USAGE}`);
  return items as T[];
}

export function parseOptions(argv: readonly string[]): PeersOptions {
  const o: PeersOptions = {
    targets: [...TARGETS],
    phases: [...PHASES],
    serverArgs: [],
    generators: 4,
    rounds: 2,
    quick: false,
    out: undefined,
    full: true,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq > 0 ? arg.slice(eq + 1) : (argv[++i] ?? ''));
    switch (name) {
      case '--only':
        o.targets = list(value(), TARGETS, 'target');
        break;
      case '--phase':
        o.phases = list(value(), PHASES, 'phase');
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
      case '--quick':
        o.quick = true;
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
  o.full = o.targets.length === TARGETS.length && o.phases.length === PHASES.length && !o.quick;
  return o;
}
