import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../helpers/read-sse.js';
import { spawnServer, type ServerProcess } from '../helpers/spawn-server.js';

// The README's shell blocks, pasted in order into one bash session, against a server started as
// `npm start` starts it: development, no configuration (its keys generated into ./data, its
// private redis-server there too). Blocks made only of `npm` commands (install, start, the test
// suite, the build) are the quick start's and Development's: the server here is started the same
// way instead, and the others would run this suite or install packages. The one liberty taken:
// the README's address 127.0.0.1:8080 is replaced with this server's.
const root = fileURLToPath(new URL('../../', import.meta.url));
const README = readFileSync(join(root, 'README.md'), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'postbox-readme-'));
let server: ServerProcess;

beforeAll(async () => {
  // '' is "unset" for the server: no keys (so they are generated), default HOST and Redis.
  server = await spawnServer({ NODE_ENV: 'development', DATA_DIR: join(work, 'data'), HOST: '', API_KEY: '', ADMIN_KEY: '', TOKEN_SECRET: '' });
});
afterAll(async () => {
  await server?.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
});

/** The ```sh blocks of the README, in order, with the lines that are not comments. */
function shellBlocks(markdown: string): Array<{ text: string; commands: string[] }> {
  const blocks = [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
  return blocks.map((text) => ({
    text,
    commands: text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#')),
  }));
}

/** What varies from run to run, made equal: event ids, ISO times, tokens, job ids. */
function normalize(line: string): string {
  return line
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/\b\d{13}-\d+\b/g, '<id>')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<token>')
    .trim();
}

function run(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const file = join(work, 'readme.sh');
    writeFileSync(file, script);
    execFile(
      'bash',
      [file],
      { cwd: work, timeout: 120_000, env: { PATH: process.env.PATH ?? '' }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the README', () => {
  it('runs its shell blocks as pasted, in order, printing every "# →" line it promises', { timeout: 180_000 }, async () => {
    const blocks = shellBlocks(README);
    const npmOnly = (b: { commands: string[] }) => b.commands.length > 0 && b.commands.every((c) => /^npm /.test(c.trim()));
    const skipped = blocks.filter(npmOnly);
    const runnable = blocks.filter((b) => !npmOnly(b));
    expect(skipped.map((b) => b.commands[0])).toEqual([expect.stringMatching(/^npm ci && npm start/), expect.stringMatching(/^npm test/)]);
    expect(runnable.length).toBeGreaterThanOrEqual(2);

    // npm start writes the keys before it listens; the README reads them from ./data.
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(work, 'data/dev-keys.json')) && Date.now() < deadline) await sleep(50);

    const body = runnable.map((b) => b.text).join('\n').replaceAll('http://127.0.0.1:8080', server.url);
    // Every command must succeed, but for the bounded look at the stream (curl --max-time exits 28).
    const script = [
      'set -o pipefail',
      `trap 'rc=$?; if [[ "$BASH_COMMAND" == *--max-time* && $rc == 28 ]]; then :; else echo "README command failed ($rc): $BASH_COMMAND" >&2; exit 1; fi' ERR`,
      body,
    ].join('\n');
    const { code, stdout, stderr } = await run(script);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).not.toMatch(/PB_ERR_|no such route/);

    // Each promised output line appears, in the order of the README.
    const promised = runnable.flatMap((b) => b.text.split('\n').filter((l) => l.startsWith('# → ')).map((l) => normalize(l.slice(4))));
    expect(promised.length).toBeGreaterThan(8);
    const printed = stdout.split('\n').map(normalize);
    let at = 0;
    for (const line of promised) {
      const found = printed.indexOf(line, at);
      expect(found, `"${line}" after output line ${at}, in:\n${stdout}`).toBeGreaterThanOrEqual(0);
      at = found + 1;
    }

    // And it leaves nothing running behind it: no recurring schedule, no scheduled message.
    const keys = JSON.parse(readFileSync(join(work, 'data/dev-keys.json'), 'utf8')) as { API_KEY: string; ADMIN_KEY: string };
    const as = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });
    const listed = (await (await fetch(`${server.url}/v1/users/42/schedules`, as(keys.API_KEY))).json()) as { schedules: unknown[] };
    expect(listed.schedules).toEqual([]);
    const queue = (await (await fetch(`${server.url}/admin/queues/42`, as(keys.ADMIN_KEY))).json()) as { scheduled: number };
    expect(queue.scheduled).toBe(0);
  });
});
