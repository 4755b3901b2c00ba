import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TEST_KEYS } from './test-keys.js';
import { waitUntil } from './wait-until.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Every server this test process started and that has not exited: killed when the process
 * exits, so a test that timed out while a server was starting leaves no orphan behind.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The real server as its own process (`node --import tsx src/main.ts`), so a test can SIGKILL it. */
export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything it printed, for failure messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The address in the server's `postbox listening on …` log line (JSON, LOG_LEVEL info), once printed. */
function listeningUrl(output: string): string | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('"postbox listening')) continue;
    try {
      const { listen } = JSON.parse(line) as { listen?: { url?: unknown } };
      if (typeof listen?.url === 'string') return listen.url;
    } catch {
      // a line cut in two by the pipe: read it whole next time
    }
  }
  return undefined;
}

/**
 * Starts the server and resolves once it answers `/readyz`. It listens on port 0
 * and its address is read from its log: a port chosen here and handed over
 * could be taken meanwhile (tsx compiles for seconds, tens of seconds at load 18,
 * while other tests open connections). `port` pins one, to restart in place.
 */
export async function spawnServer(env: Record<string, string | number>, port = 0): Promise<ServerProcess> {
  // The address is read from an info line: a quieter level would leave nothing to read.
  if (env.LOG_LEVEL !== undefined && !['trace', 'debug', 'info'].includes(String(env.LOG_LEVEL))) {
    throw new Error(`spawnServer needs LOG_LEVEL info or lower to find the address, not ${env.LOG_LEVEL}`);
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      ...TEST_KEYS,
      ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const ready = async () => {
    const url = listeningUrl(output);
    if (url === undefined) return false;
    try {
      // A bound per attempt: an answer that never comes is retried, not waited on for ever.
      return (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) })).status === 200;
    } catch {
      return false;
    }
  };
  try {
    // tsx compiles the sources at start: seconds on an idle machine, over 30 s at load 18.
    // An exit ends the wait too: there is nothing left to wait for.
    await waitUntil(async () => gone() || (await ready()), 'the server answers /readyz', {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}:\n${output}`, { cause: err });
  }
  if (gone()) throw new Error(`server exited early:\n${output}`);
  const url = listeningUrl(output)!;
  return {
    url,
    port: Number(new URL(url).port),
    child,
    output: () => output,
    async kill(signal = 'SIGKILL') {
      if (!gone()) child.kill(signal);
      return exited;
    },
  };
}
export { TEST_KEYS } from './test-keys.js';
