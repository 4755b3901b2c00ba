import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Koa from 'koa';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { clientBuildStale, createClientBuild } from '../../src/http/client-build.js';
import { clientRoutes } from '../../src/http/client-routes.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';

// The client is built when npm start needs it, not before every start: in the background, into a
// temporary directory renamed into place, one node at a time. Each test works on a copy of the
// client's source in a temporary "repository", never on this checkout's dist/.
const repo = fileURLToPath(new URL('../../', import.meta.url));
const tsc = join(repo, 'node_modules/typescript/bin/tsc');
const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

function copyOfRepo(): string {
  const root = mkdtempSync(join(tmpdir(), 'postbox-client-build-'));
  roots.push(root);
  mkdirSync(join(root, 'src/client'), { recursive: true });
  for (const name of readdirSync(join(repo, 'src/client'))) copyFileSync(join(repo, 'src/client', name), join(root, 'src/client', name));
  copyFileSync(join(repo, 'tsconfig.client.json'), join(root, 'tsconfig.client.json'));
  return root;
}

/** One node's start-up build, in its own process, as several nodes started together do it. */
function buildInProcess(root: string): Promise<string> {
  const script = `
    const { createClientBuild } = await import(${JSON.stringify(join(repo, 'src/http/client-build.ts'))});
    const lines = [];
    const logger = { info: (o, m) => lines.push(m), warn: (o, m) => lines.push('WARN ' + m + ' ' + (o.err?.message ?? '')) };
    await createClientBuild({ root: ${JSON.stringify(root)}, logger, tsc: ${JSON.stringify(tsc)} }).ready();
    process.stdout.write(lines.join('\\n'));
  `;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repo }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

describe('the browser client build', () => {
  it('three nodes started together build it once, and nobody ever reads half a file', async () => {
    const root = copyOfRepo();
    const built = join(root, 'dist/client/postbox.js');
    expect(clientBuildStale(root)).toBe(true);
    const reads = new Set<string>(); // every distinct content seen
    let building = true;
    const watching = (async () => {
      // Reads while the builds run; bounded by the builds' end (and by count, whatever happens).
      for (let i = 0; building && i < 200_000; i += 1) {
        try {
          reads.add(readFileSync(built, 'utf8'));
        } catch {
          // not there yet
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    let outputs: string[];
    try {
      outputs = await Promise.all([buildInProcess(root), buildInProcess(root), buildInProcess(root)]);
    } finally {
      building = false;
      await watching;
    }
    expect(outputs.join('\n')).not.toContain('WARN');
    expect(outputs.filter((o) => o.includes('browser client built'))).toHaveLength(1);
    expect(clientBuildStale(root)).toBe(false);
    const final = readFileSync(built, 'utf8');
    expect(final).toMatch(/export function connect\(/);
    expect(readFileSync(join(root, 'dist/client/postbox.d.ts'), 'utf8')).toMatch(/export declare function connect\(/);
    expect([...reads].filter((read) => read !== final)).toEqual([]);
    // No temporary directory or lock left behind.
    expect(readdirSync(join(root, 'dist')).sort()).toEqual(['client']);
  });

  it('a node listens at once and its first request for the client waits for the build', async () => {
    const root = copyOfRepo();
    const logger = pino({ level: 'silent' });
    const build = createClientBuild({ root, logger, tsc });
    const app = new Koa();
    app.use(errorMiddleware(logger));
    app.use(clientRoutes({ build }).routes());
    const server: Server = createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      expect(clientBuildStale(root)).toBe(true); // listening, nothing built yet
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/client/postbox.js`;
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(readFileSync(join(root, 'dist/client/postbox.js'), 'utf8'));

      // An edit of the source is built again on the next request, without a restart.
      const source = join(root, 'src/client/postbox.ts');
      const text = readFileSync(source, 'utf8');
      // The built files made older than any clock step between the two writes could hide.
      const earlier = new Date(Date.now() - 60_000);
      for (const name of ['postbox.js', 'postbox.d.ts']) utimesSync(join(root, 'dist/client', name), earlier, earlier);
      writeFileSync(source, `${text}\nexport const rebuiltMarker = 1;\n`);
      expect(clientBuildStale(root)).toBe(true);
      expect(await (await fetch(url)).text()).toContain('rebuiltMarker');
    } finally {
      server.close();
    }
  });

  it('says so when it cannot build (no typescript), and leaves nothing half-built', async () => {
    const root = copyOfRepo();
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const build = createClientBuild({ root, logger, tsc: join(root, 'no-such-tsc.js') });
    await build.ready();
    expect(warnings.join('\n')).toMatch(/could not be built/);
    expect(clientBuildStale(root)).toBe(true);
    expect(readdirSync(join(root, 'dist')).sort()).toEqual([]);
  });
});
