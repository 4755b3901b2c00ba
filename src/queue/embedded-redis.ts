import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import type { Logger } from 'pino';

export interface EmbeddedRedis {
  /** A unix socket path, which ioredis accepts in place of a URL. */
  url: string;
  stop(): Promise<void>;
}

/** True when something accepts TCP connections on host:port within `timeoutMs`. */
export function isListening(host: string, port: number, timeoutMs = 300): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
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
 */
export async function startEmbeddedRedis(dataDir: string, logger: Logger): Promise<EmbeddedRedis> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const socket = resolve(dir, 'redis.sock');
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port', '0',
      '--unixsocket', socket,
      '--unixsocketperm', '700',
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--save', '',
      '--maxmemory-policy', 'noeviction',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  await new Promise<void>((ready, fail) => {
    child.once('error', (err) => fail(new Error(`cannot run redis-server (is it installed?): ${err.message}`)));
    void exited.then((code) => fail(new Error(`redis-server exited with ${code}:\n${output}`)));
    child.stdout?.on('data', () => {
      if (/Ready to accept connections/.test(output)) ready();
    });
  });
  logger.info({ dir, socket, pid: child.pid }, 'embedded redis-server started (append-only file under data dir)');
  return {
    url: socket,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}
