import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './start-redis.js';
import { TEST_KEYS } from './test-keys.js';
import { waitUntil } from './wait-until.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The real server as its own process (`node --import tsx src/main.ts`), so a test can SIGKILL it. */
export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything it printed, for failure messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function spawnServer(env: Record<string, string | number>, port?: number): Promise<ServerProcess> {
  const listenPort = port ?? (await freePort());
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(listenPort),
      LOG_LEVEL: 'info',
      ...TEST_KEYS,
      ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
  const url = `http://127.0.0.1:${listenPort}`;
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const ready = async () => {
    try {
      return (await fetch(`${url}/readyz`)).status === 200;
    } catch {
      return false; // not listening yet
    }
  };
  try {
    // An exit ends the wait too: there is nothing left to wait for.
    // tsx compiles the sources at start: seconds on an idle machine, over 30 s at load 18.
    await waitUntil(async () => gone() || (await ready()), 'the server answers /readyz', {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}:\n${output}`, { cause: err });
  }
  if (gone()) throw new Error(`server exited early:\n${output}`);
  return {
    url,
    port: listenPort,
    child,
    output: () => output,
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
