import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/helpers/start-redis.js';
import { sleep } from '../lib.js';
import { childrenOf, openFilesLimit } from './proc.js';

/*
 * Nchan (nginx + Debian's libnginx-mod-nchan) as a bench target: a generated
 * nginx.conf in a temp prefix, one worker, 127.0.0.1 on a free port, started
 * in the foreground as our child and stopped by pid. Never the system's nginx.
 */

const MODULE_DIRS = ['/usr/lib/nginx/modules', '/usr/share/nginx/modules'];

function modulePath(): string | undefined {
  return MODULE_DIRS.map((d) => join(d, 'ngx_nchan_module.so')).find((p) => existsSync(p));
}

function hasNginx(): boolean {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Installs nginx and the Nchan module from Debian's packages when either is
 * missing (as root; `apt-get update` only if the first try fails). Returns
 * the module's path, or why Nchan cannot be benchmarked here.
 */
export function ensureNchan(): { module: string } | { missing: string } {
  const found = modulePath();
  if (found !== undefined && hasNginx()) return { module: found };
  if (process.getuid?.() !== 0) return { missing: 'nginx or libnginx-mod-nchan is not installed, and we are not root' };
  const install = () =>
    execFileSync('apt-get', ['install', '-y', 'nginx-light', 'libnginx-mod-nchan'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  process.stderr.write('bench:peers: installing nginx-light and libnginx-mod-nchan\n');
  try {
    install();
  } catch {
    execFileSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    install();
  }
  const installed = modulePath();
  return installed !== undefined && hasNginx() ? { module: installed } : { missing: 'the Nchan module was not found after installing' };
}

/** nginx and Nchan versions, for the report; `not installed` where missing. */
export function nchanVersions(): { nginx: string; nchan: string } {
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  // `nginx -v` prints on stderr.
  const nginx = /nginx\/(\S+)/.exec(run('sh', ['-c', 'nginx -v 2>&1']))?.[1] ?? 'not installed';
  return { nginx, nchan: (modulePath() && run('dpkg-query', ['-W', '-f=${Version}', 'libnginx-mod-nchan'])) || 'not installed' };
}

export interface NchanOptions {
  module: string;
  /** Redis storage at this `redis://host:port` when set; memory storage otherwise. */
  redisUrl?: string;
  /** Messages kept per channel (one channel per user). @defaultValue 100 */
  bufferLength?: number;
  /** HTTPS with HTTP/2 (and HTTP/1.1 for clients that do not offer h2) with this certificate. @defaultValue plain HTTP/1.1 */
  tls?: { certFile: string; keyFile: string; ca: string };
  /** A ping to every subscriber this often, s (nchan_eventsource_ping_interval). @defaultValue 0, never (Nchan's default) */
  pingSeconds?: number;
}

export interface NchanServer {
  readonly url: string;
  /** The master and its worker(s). */
  pids(): number[];
  /** Lines of nginx's error log (level warn and above) so far. */
  logLines(): number;
  stop(): Promise<void>;
}

function config(o: NchanOptions, prefix: string, port: number): string {
  const files = Math.min(65_536, openFilesLimit());
  // Connection slots are not only sockets: with a subscriber per channel Nchan takes more slots
  // than it has streams ("worker_connections are not enough" at 18,600 of 19,900), and nginx takes
  // one per HTTP/2 stream. Sockets stay bound by the descriptors (nginx warns when slots exceed them).
  const connections = Math.max(200_000, 3 * files);
  // The backlog of postbox's HTTP_LISTEN_BACKLOG default, rather than nginx's 511.
  const listen =
    o.tls === undefined
      ? `listen 127.0.0.1:${port} backlog=4096;`
      : `listen 127.0.0.1:${port} ssl http2 backlog=4096;\n    ssl_certificate ${o.tls.certFile};\n    ssl_certificate_key ${o.tls.keyFile};`;
  const redis = o.redisUrl === undefined ? '' : `  upstream peers_redis {\n    nchan_redis_server ${o.redisUrl};\n  }\n`;
  const pass = o.redisUrl === undefined ? '' : '      nchan_redis_pass peers_redis;\n';
  // One location pair, channel id = user id: the per-user mailbox shape of the job.
  return `load_module ${o.module};
worker_processes 1;
worker_rlimit_nofile ${files};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events {
  worker_connections ${connections};
}
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${redis}  server {
    ${listen}
    location ~ ^/pub/([A-Za-z0-9._:@-]+)$ {
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length ${o.bufferLength ?? 100};
      nchan_message_timeout 1h;
${pass}    }
    location ~ ^/sub/([A-Za-z0-9._:@-]+)$ {
      nchan_subscriber eventsource;
      nchan_eventsource_ping_interval ${o.pingSeconds ?? 0};
      nchan_channel_id $1;
${pass}    }
  }
}
`;
}

function probe(url: string, ca: string | undefined): Promise<number> {
  return new Promise((resolve) => {
    const get = ca === undefined ? http.get : (u: string, cb: (res: http.IncomingMessage) => void) => https.get(u, { ca }, cb);
    const req = get(`${url}/pub/ready-probe`, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(2_000, () => req.destroy());
  });
}

/** Starts nginx with Nchan and waits until its publisher location answers (at most 15 s). */
export async function startNchan(options: NchanOptions): Promise<NchanServer> {
  const prefix = mkdtempSync(join(tmpdir(), 'postbox-peers-nchan-'));
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, config(options, prefix, port));
  const child = spawn('nginx', ['-c', conf, '-p', prefix, '-e', join(prefix, 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const master = child.pid ?? 0;
  const deadline = Date.now() + 15_000;
  const ca = options.tls?.ca;
  // A channel nobody published to is a 404: the server, and its Redis when it has one, answers.
  for (let status = await probe(url, ca); status !== 404 && status !== 200; status = await probe(url, ca)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not start (last status ${status}):\n${stderr}`);
    }
    await sleep(100);
  }
  return {
    url,
    pids: () => [master, ...childrenOf(master)],
    logLines() {
      try {
        return readFileSync(join(prefix, 'error.log'), 'utf8')
          .split('\n')
          .filter((line) => line.trim() !== '').length;
      } catch {
        return 0;
      }
    },
    async stop() {
      const workers = childrenOf(master);
      // SIGTERM is nginx's fast shutdown: it does not wait for open streams to end.
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        for (const pid of workers) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }, 10_000);
      await exited;
      clearTimeout(timer);
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}
