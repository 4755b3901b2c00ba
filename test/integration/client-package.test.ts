import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The client package as an application gets it: `npm pack ./client` in this checkout (its prepack
// script builds it), then `npm install <tarball>` in another project, offline (the package has no
// dependencies, so nothing comes from a registry), then `import ... from 'postbox/client'`.
const repo = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'postbox-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(command, args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

interface PackReport {
  filename: string;
  files: Array<{ path: string }>;
  bundled: string[];
}

describe('the postbox/client package', () => {
  it('packs only the built module, the service-worker helper, their types, README and package.json; installs offline; imports with its types', { timeout: 180_000 }, async () => {
    const packed = JSON.parse(await run('npm', ['pack', './client', '--json', '--pack-destination', work], repo)) as PackReport[];
    const [report] = packed;
    expect(report?.files.map((f) => f.path).sort()).toEqual([
      'README.md',
      'dist/postbox-sw.d.ts',
      'dist/postbox-sw.js',
      'dist/postbox.d.ts',
      'dist/postbox.js',
      'package.json',
    ]);
    const tarball = join(work, report?.filename ?? '');
    expect(existsSync(tarball)).toBe(true);

    const app = join(work, 'app');
    await run('mkdir', ['-p', app], work);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    await run('npm', ['install', tarball, '--offline', '--no-audit', '--no-fund'], app);
    expect(existsSync(join(app, 'node_modules/postbox/dist/postbox.d.ts'))).toBe(true);
    // The service-worker helper, for a worker that imports it from the application's own files.
    expect(existsSync(join(app, 'node_modules/postbox/dist/postbox-sw.js'))).toBe(true);

    // The ES module, through the package's exports map.
    const probe = `
      const client = await import('postbox/client');
      const { createIdMemory, backoffDelay, connect } = client;
      const memory = createIdMemory(2);
      ['a', 'b', 'c'].forEach((id) => memory.add(id));
      console.log(JSON.stringify({
        exports: Object.keys(client).sort(),
        memory: [memory.has('a'), memory.has('c')],
        firstRetryCeilingMs: backoffDelay(1, {}, () => 0.999999),
        noToken: (() => { try { connect({ url: '', EventSource: class {}, fetch: async () => ({}) }); } catch (e) { return e.message; } })(),
      }));
    `;
    const out = JSON.parse(await run(process.execPath, ['--input-type=module', '-e', probe], app)) as {
      exports: string[];
      memory: boolean[];
      firstRetryCeilingMs: number;
      noToken: string;
    };
    expect(out.exports).toEqual(expect.arrayContaining(['connect', 'backoffDelay', 'createAckBatcher', 'PostboxError']));
    expect(out.memory).toEqual([false, true]);
    expect(out.firstRetryCeilingMs).toBeLessThan(1000);
    expect(out.noToken).toMatch(/pass `token` or `getToken`/);

    // The types, as TypeScript resolves them for an application (`@ts-expect-error` fails the
    // compile if the option's type were not checked, i.e. if the types were not found).
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, lib: ['es2022', 'dom'], types: [] },
        files: ['app.ts'],
      }),
    );
    writeFileSync(
      join(app, 'app.ts'),
      [
        "import { connect, type PostboxClient, type PostboxMessage } from 'postbox/client';",
        "const client: PostboxClient = connect({ url: 'https://push.example.com', token: 't', events: ['chat'] });",
        "client.on<{ text: string }>('chat', (msg: PostboxMessage<{ text: string }>) => void msg.data.text.length);",
        '// @ts-expect-error url is a string',
        "connect({ url: 1, token: 't' });",
        '',
      ].join('\n'),
    );
    await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', app], app);
  });
});
