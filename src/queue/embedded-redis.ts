import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { connect, type NetConnectOpts } from 'node:net';
import { resolve } from 'node:path';
import type { Logger } from 'pino';

export interface EmbeddedRedis {
  /** A unix socket path, which ioredis accepts in place of a URL. */
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedRedisOptions {
  /** The redis-server executable, looked up on PATH unless it is a path. @defaultValue 'redis-server' */
  command?: string;
  /**
   * How long redis-server may take to say it accepts connections before start-up fails (and it
   * is stopped), ms. @defaultValue 60000 (READY_TIMEOUT_MS)
   */
  readyTimeoutMs?: number;
}

/**
 * How long a connect may take before it counts as nobody listening, ms. Generous: where nothing
 * listens the connect is refused at once, so the bound only decides for a server that is there
 * but slow to answer, or for this process's own event loop held up (start-up on a loaded machine
 * runs late timers before the I/O they raced), and either must not be taken for no server.
 */
export const CONNECT_TIMEOUT_MS = 10_000;
/** How long the embedded redis-server may take to start, ms: a loaded machine is slow, not broken. */
export const READY_TIMEOUT_MS = 60_000;

/** redis-server could not be run: it is not installed (not on PATH). */
export class RedisServerMissingError extends Error {
  override name = 'RedisServerMissingError';
}

/** True when something accepts connections at `target` within `timeoutMs` (ms). */
export function isListening(target: NetConnectOpts, timeoutMs = CONNECT_TIMEOUT_MS): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(target);
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/**
 * Launches a private redis-server (from PATH) on a unix socket under `dataDir`,
 * with append-only persistence, so `npm start` needs no configuration and an
 * acknowledged enqueue survives a restart. Stopped with the process.
 *
 * If a previous run was killed (SIGKILL) its redis-server is still serving the
 * same directory; starting a second one on the same append-only file would
 * corrupt it, so that one is adopted instead, and stopped on exit like ours.
 */
export async function startEmbeddedRedis(
  dataDir: string,
  logger: Logger,
  options: EmbeddedRedisOptions = {},
): Promise<EmbeddedRedis> {
  const command = options.command ?? 'redis-server';
  const readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const socket = resolve(dir, 'redis.sock');
  const pidFile = resolve(dir, 'redis.pid');

  if (existsSync(socket) && (await isListening({ path: socket }))) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    logger.warn({ dir, socket, pid }, 'adopting the embedded redis-server left running by a previous run');
    return { url: socket, stop: () => stopPid(pid) };
  }

  const child = spawn(
    command,
    [
      '--port', '0',
      '--unixsocket', socket,
      '--unixsocketperm', '700',
      '--pidfile', pidFile,
      '--dir', dir,
      '--appendonly', 'yes',
      // An answered enqueue is on disk: with everysec, Redis may answer while a slow fsync
      // holds its write back, and a crash then loses up to two seconds of acknowledged writes.
      // Redis syncs once per event-loop turn, so a busy node pays one fsync per batch of commands.
      '--appendfsync', 'always',
      '--save', '',
      '--maxmemory-policy', 'noeviction',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let limit: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((ready, fail) => {
      child.once('error', (err: NodeJS.ErrnoException) =>
        fail(
          err.code === 'ENOENT'
            ? new RedisServerMissingError(`${command} is not on PATH (apt-get install -y redis-server)`)
            : new Error(`cannot run ${command}: ${err.message}`),
        ),
      );
      void exited.then((code) => fail(new Error(`redis-server exited with ${code}:\n${output}`)));
      child.stdout.on('data', () => {
        // Redis 7 says "Ready to accept connections" on TCP, "ready to accept connections at <socket>" on a socket.
        if (/ready to accept connections/i.test(output)) ready();
      });
      limit = setTimeout(
        () => fail(new Error(`redis-server did not say it accepts connections within ${readyTimeoutMs} ms:\n${output}`)),
        readyTimeoutMs,
      );
    });
  } catch (err) {
    // Ours, and not ready: it goes, so a later start finds no half-started server on the directory.
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    throw err;
  } finally {
    clearTimeout(limit);
  }
  logger.info({ dir, socket, pid: child.pid }, 'embedded redis-server started (append-only file under data dir)');
  return {
    url: socket,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** SIGTERM makes redis-server flush its append-only file and exit; wait until the pid is gone. */
async function stopPid(pid: number): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  for (let i = 0; i < 100; i += 1) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
