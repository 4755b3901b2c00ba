import { execFile } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** The files `tsc -p tsconfig.client.json` writes to dist/client, all of which a build must leave there. */
export const CLIENT_FILES = ['postbox.js', 'postbox.d.ts', 'postbox-sw.js', 'postbox-sw.d.ts'] as const;

/** Another process's build lock older than this is taken to be left by a killed process, ms. */
const LOCK_STALE_MS = 120_000;
/** How often a process waiting on another's build looks again, ms. */
const LOCK_POLL_MS = 200;

export interface ClientBuildOptions {
  /** The repository: holds `src/client`, `tsconfig.client.json` and `dist/client`. */
  root: string;
  logger: Pick<Logger, 'info' | 'warn'>;
  /** The `tsc` script. @defaultValue typescript's, resolved from `root` */
  tsc?: string;
}

export interface ClientBuild {
  /** dist/client, where the built files are served from. */
  readonly dir: string;
  /**
   * Resolves once dist/client is at least as new as its source: at once when it is (two stats),
   * else after one build (shared by every caller meanwhile). Never rejects: a build that fails is
   * logged, and the files then stay as they were (missing ones answer 503).
   */
  ready(): Promise<void>;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** True when a built file is missing or older than the client's source or its tsconfig. */
export function clientBuildStale(root: string): boolean {
  const sources = [join(root, 'tsconfig.client.json')];
  try {
    for (const name of readdirSync(join(root, 'src/client'))) if (name.endsWith('.ts')) sources.push(join(root, 'src/client', name));
  } catch {
    return false; // no source here (an installed package): nothing to build from
  }
  const newest = Math.max(...sources.map(mtime));
  return CLIENT_FILES.some((name) => mtime(join(root, 'dist/client', name)) < newest);
}

/**
 * Builds the browser client without ever showing a half-written file: `tsc` writes into a
 * fresh directory beside dist/client, and each file is then renamed into place (a rename within
 * one file system replaces its target atomically, POSIX rename(2)). Several nodes started
 * together take turns through a lock file, so one of them compiles and the others wait for it.
 * Started by the first `ready()`, not before: `npm start` listens at once.
 */
export function createClientBuild(options: ClientBuildOptions): ClientBuild {
  const { root, logger } = options;
  const dist = join(root, 'dist');
  const dir = join(dist, 'client');
  const lock = join(dist, '.client-build.lock');
  let running: Promise<void> | undefined;

  function tscPath(): string | undefined {
    if (options.tsc !== undefined) return options.tsc;
    try {
      return createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
    } catch {
      return undefined;
    }
  }

  function takeLock(): boolean {
    try {
      closeSync(openSync(lock, 'wx'));
      return true;
    } catch {
      if (Date.now() - mtime(lock) > LOCK_STALE_MS) {
        rmSync(lock, { force: true });
        return takeLock();
      }
      return false;
    }
  }

  async function compile(tsc: string): Promise<void> {
    const out = mkdtempSync(join(dist, '.client-'));
    try {
      await new Promise<void>((resolve, reject) =>
        execFile(process.execPath, [tsc, '-p', join(root, 'tsconfig.client.json'), '--outDir', out], { cwd: root }, (err, stdout) =>
          err ? reject(new Error(`${err.message}\n${stdout}`)) : resolve(),
        ),
      );
      mkdirSync(dir, { recursive: true });
      for (const name of CLIENT_FILES) renameSync(join(out, name), join(dir, name));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }

  async function build(): Promise<void> {
    const tsc = tscPath();
    if (tsc === undefined) {
      logger.warn({ dir }, 'the browser client is out of date or missing, and typescript is not installed to build it');
      return;
    }
    mkdirSync(dist, { recursive: true });
    const deadline = Date.now() + LOCK_STALE_MS;
    let locked = takeLock();
    while (!locked) {
      // Another node is building it: done when the files are fresh; its lock gone means it failed.
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
      if (!clientBuildStale(root)) return;
      locked = takeLock();
      if (!locked && Date.now() > deadline) break; // build without the lock rather than never
    }
    try {
      if (!clientBuildStale(root)) return; // built by another node in the meantime
      const started = Date.now();
      await compile(tsc);
      logger.info({ dir, ms: Date.now() - started }, 'browser client built');
    } finally {
      if (locked) rmSync(lock, { force: true });
    }
  }

  return {
    dir,
    ready() {
      if (running !== undefined) return running;
      if (!clientBuildStale(root)) return Promise.resolve();
      running = build()
        .catch((err: unknown) => logger.warn({ err }, 'the browser client could not be built'))
        .finally(() => (running = undefined));
      return running;
    },
  };
}
