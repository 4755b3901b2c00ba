import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A private redis-server for one test file: its own port, its own temp dir, append-only on. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** SIGKILL (or another signal) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same port and dir, reloading the append-only file. */
  restart(): Promise<void>;
  /** A plain client for assertions; closed by stop(). */
  client(): Redis;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** redis-server's words when another socket holds its port. */
const PORT_TAKEN = /Address already in use/;
/** How long redis-server may take to say it accepts connections, ms: a loaded machine is slow to start a process, not wrong. */
const READY_MS = 30_000;

export function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/**
 * Spawns redis-server with `args` and resolves once it says it accepts connections. One that
 * exits first, or says nothing for 30 s (killed then), fails with what it printed.
 */
export async function spawnRedisServer(args: string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within ${READY_MS / 1000} s:\n${output}`)), READY_MS);
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code ?? signal}):\n${output}`));
      });
    });
  } catch (err) {
    if (isRunning(child)) child.kill('SIGKILL');
    throw err;
  }
  // Keep draining the pipes so a chatty server never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

/** Sends `signal` to a child still running and waits for its exit. */
export async function signalAndWait(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

export async function startRedis(): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'postbox-redis-'));
  let port = 0;
  const clients: Redis[] = [];
  let child: ChildProcess | undefined;

  async function launch(): Promise<void> {
    child = await spawnRedisServer([
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--save', '',
      '--maxmemory-policy', 'noeviction',
    ]);
  }

  const kill = (signal: NodeJS.Signals = 'SIGKILL') => signalAndWait(child, signal);

  // A free port found here can be taken before redis-server binds it (by any socket of a busy
  // machine, outgoing ones included): take another. Bounded: five ports.
  for (let attempt = 1; ; attempt += 1) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 5 || !PORT_TAKEN.test((err as Error).message)) throw err;
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    async restart() {
      // Same port (clients reconnect to it): if a socket took it meanwhile, wait until it is
      // released. Bounded: 40 tries, 250 ms apart.
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await launch();
        } catch (err) {
          if (attempt >= 40 || !PORT_TAKEN.test((err as Error).message)) throw err;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    },
    client() {
      const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      // Tests kill this server on purpose; reconnection errors are expected noise.
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
