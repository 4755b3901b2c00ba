import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { spawnServer, TEST_KEYS } from '../helpers/spawn-server.js';
import { freePort, startRedis, type TestRedis } from '../helpers/start-redis.js';

// What `npm start` says and where it listens, in development and in production.
const root = fileURLToPath(new URL('../..', import.meta.url));
let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

interface LogLine {
  msg: string;
  listen?: { bound?: string; url?: string; demo?: string; admin?: string };
}

function listeningLine(output: string): LogLine | undefined {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
    .find((l) => l.msg.startsWith('postbox listening'));
}

describe('start-up', () => {
  it('HOST defaults to loopback in development and to every interface in production', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).config.HOST).toBe('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'test' }).config.HOST).toBe('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'production', ...TEST_KEYS }).config.HOST).toBe('0.0.0.0');
    expect(loadConfig({ NODE_ENV: 'development', HOST: '0.0.0.0' }).config.HOST).toBe('0.0.0.0');
  });

  it('in development listens on 127.0.0.1 unless HOST says otherwise, and lists the demo and admin URLs', async () => {
    // HOST '' is "unset" (as in a .env file), so the default applies.
    const server = await spawnServer({ NODE_ENV: 'development', HOST: '', REDIS_URL: redis.url, KEY_PREFIX: 'dev' });
    try {
      const line = listeningLine(server.output());
      const url = `http://127.0.0.1:${server.port}`;
      expect(line?.listen).toMatchObject({ bound: `127.0.0.1:${server.port}`, url, demo: `${url}/demo`, admin: `${url}/admin` });
      expect(line?.msg).toBe(`postbox listening on 127.0.0.1:${server.port}: ${url} (demo ${url}/demo, admin ${url}/admin)`);
    } finally {
      await server.kill('SIGTERM');
    }
  });

  it('in production listens on every interface and says so, with the address it really bound', async () => {
    const server = await spawnServer({ NODE_ENV: 'production', HOST: '', REDIS_URL: redis.url, KEY_PREFIX: 'prod' });
    try {
      const line = listeningLine(server.output());
      expect(line?.listen?.bound).toBe(`0.0.0.0:${server.port}`);
      expect(line?.msg).toContain(`listening on 0.0.0.0:${server.port} (every interface): http://127.0.0.1:${server.port}`);
      expect(line?.listen?.demo).toBeUndefined(); // no demo outside development
    } finally {
      await server.kill('SIGTERM');
    }
  });

  it('prints readable lines, not JSON, to a developer terminal', { timeout: 60_000 }, async () => {
    const port = await freePort();
    // `script` runs the server on a pseudo-terminal, as a developer's shell would.
    const child = spawn('script', ['-qfec', `${process.execPath} --import tsx src/main.ts`, '/dev/null'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', PORT: String(port), REDIS_URL: redis.url, KEY_PREFIX: 'tty', ...TEST_KEYS },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    try {
      const deadline = Date.now() + 30_000;
      while (!/postbox listening/.test(output)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no listening line:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      // eslint-disable-next-line no-control-regex
      const plain = output.replace(/\u001b\[[0-9;]*m/g, '');
      expect(plain).toMatch(new RegExp(`INFO.*: postbox listening on 127\\.0\\.0\\.1:${port}: http://127\\.0\\.0\\.1:${port} \\(demo `));
      expect(plain).not.toContain('{"level"');
    } finally {
      // The whole group this test started: script and the server under it.
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
      await exited;
    }
  });
});
