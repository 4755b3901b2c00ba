import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/*
 * Summarises a `node --cpu-prof` profile: the top functions by self time, and
 * self time by where the code lives (src/, a package under node_modules, node
 * internals, GC, idle).
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [--top 15] [--from <µs> --to <µs>]
 *
 * --from/--to keep the samples of one window only, in µs of CLOCK_MONOTONIC:
 * V8 stamps profiles with the clock behind process.hrtime, so the bench can
 * name the window it measured (start-up and module loading left out).
 */

/** The parts of the V8 CPU profile format (Chrome DevTools Protocol, Profiler.Profile) read here. */
interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }>;
  startTime: number;
  endTime: number;
  /** Node id of each sample. */
  samples: number[];
  /** µs since the previous sample, one per sample. */
  timeDeltas: number[];
}

const root = fileURLToPath(new URL('..', import.meta.url));

/** A short place for a script URL: repo-relative, `pkg:name`, or `node:…`. */
function where(url: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    const pkg = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? '');
    return `${pkg}:${rest.slice(pkg.split('/').length).join('/')}`;
  }
  return path.startsWith(root) ? path.slice(root.length) : path;
}

/** The bucket of a place: `src/…` directory, a package, node internals, or a V8 pseudo-frame. */
function bucket(functionName: string, url: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const w = where(url);
  if (w.startsWith('node:')) return 'node internals';
  if (w.startsWith('src/')) return w.split('/').slice(0, 2).join('/');
  const colon = w.indexOf(':');
  return colon > 0 ? `npm ${w.slice(0, colon)}` : w;
}

export function summarise(profile: CpuProfile, top: number, window?: { fromUs: number; toUs: number }): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const total = [...selfUs.values()].reduce((s, v) => s + v, 0);
  const fns = new Map<string, { name: string; place: string; us: number }>();
  const buckets = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) continue;
    // Line and column in the code V8 ran: for TypeScript that is tsx's output, so the column tells functions apart.
    const place = f.url === '' ? '' : `${where(f.url)}:${f.lineNumber + 1}:${f.columnNumber + 1}`;
    const key = `${f.functionName}@${place}`;
    const entry = fns.get(key) ?? { name: f.functionName || '(anonymous)', place, us: 0 };
    entry.us += us;
    fns.set(key, entry);
    const b = bucket(f.functionName, f.url);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
  }
  // Native frames (socket writes, hashing) have no place of their own: charge each to the
  // nearest caller outside node's internals, to see whose writes they are.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nativeTop = [...fns.values()].filter((f) => f.place === '' && !f.name.startsWith('(')).sort((a, b) => b.us - a.us).slice(0, 3);
  const callers = new Map<string, Map<string, number>>(nativeTop.map((f) => [f.name, new Map()]));
  for (const [id, us] of selfUs) {
    const f = byId.get(id)?.callFrame;
    const into = f === undefined ? undefined : callers.get(f.functionName);
    if (into === undefined || f?.url !== '') continue;
    let at = parent.get(id);
    let caller = '(none)';
    for (let hops = 0; at !== undefined && hops < 200; hops += 1, at = parent.get(at)) {
      const cf = byId.get(at)?.callFrame;
      if (cf !== undefined && cf.url !== '' && !where(cf.url).startsWith('node:')) {
        caller = `${cf.functionName || '(anonymous)'} ${where(cf.url)}:${cf.lineNumber + 1}:${cf.columnNumber + 1}`;
        break;
      }
    }
    into.set(caller, (into.get(caller) ?? 0) + us);
  }
  const idle = buckets.get('(idle)') ?? 0;
  const busy = total - idle;
  const pct = (us: number) => `${((us / Math.max(1, busy)) * 100).toFixed(1)}%`;
  const ms = (us: number) => (us / 1000).toFixed(1);
  const lines: string[] = [];
  const wall = window === undefined ? profile.endTime - profile.startTime : window.toUs - window.fromUs;
  lines.push(
    `${window === undefined ? 'profile' : 'window'}: ${ms(wall)} ms wall, ${ms(busy)} ms on CPU (idle ${ms(idle)} ms); ` +
      `percentages are of the time on CPU`,
  );
  lines.push('');
  lines.push(`| # | self ms | self % | function | where |`);
  lines.push(`|---:|---:|---:|---|---|`);
  [...fns.values()]
    .filter((f) => f.name !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .forEach((f, i) => lines.push(`| ${i + 1} | ${ms(f.us)} | ${pct(f.us)} | \`${f.name}\` | ${f.place} |`));
  lines.push('');
  lines.push(`| self time by place | ms | % |`);
  lines.push(`|---|---:|---:|`);
  [...buckets.entries()]
    .filter(([b]) => b !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)
    .forEach(([b, us]) => lines.push(`| ${b} | ${ms(us)} | ${pct(us)} |`));
  for (const [name, by] of callers) {
    if ([...by.keys()].every((c) => c === '(none)')) continue; // e.g. runMicrotasks, entered from the event loop
    lines.push('');
    lines.push(`| \`${name}\` called from (nearest frame outside node internals) | ms | % |`);
    lines.push(`|---|---:|---:|`);
    [...by.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .forEach(([c, us]) => lines.push(`| ${c} | ${ms(us)} | ${pct(us)} |`));
  }
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  const arg = (name: string) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? Number(process.argv[at + 1]) : Number.NaN;
  };
  const top = arg('--top') || 15;
  const fromUs = arg('--from');
  const toUs = arg('--to');
  const window = Number.isFinite(fromUs) && Number.isFinite(toUs) ? { fromUs, toUs } : undefined;
  if (file === undefined) {
    console.error('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [--top 15] [--from <µs> --to <µs>]');
    process.exit(2);
  }
  process.stdout.write(summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top, window));
}
