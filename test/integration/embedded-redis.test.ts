import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { isListening, startEmbeddedRedis } from '../../src/queue/embedded-redis.js';
import { openSse } from '../helpers/read-sse.js';
import { spawnServer } from '../helpers/spawn-server.js';
import { TEST_KEYS } from '../helpers/test-keys.js';

const headers = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const redisPid = (dataDir: string) => Number(readFileSync(join(dataDir, 'redis.pid'), 'utf8').trim());

/**
 * A data dir of this test's own, so no test depends on what another left in it. When the test
 * ends, a redis-server still serving it (the test failed half-way) is stopped, by its pid file.
 */
function freshDataDir(): { dataDir: string; env: Record<string, string> } {
  const dataDir = mkdtempSync(join(tmpdir(), 'postbox-embedded-'));
  onTestFinished(() => {
    if (existsSync(join(dataDir, 'redis.pid')) && alive(redisPid(dataDir))) process.kill(redisPid(dataDir), 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { dataDir, env: { REDIS_URL: 'embedded', DATA_DIR: dataDir } };
}

async function enqueue(url: string, data: unknown): Promise<string> {
  const res = await fetch(`${url}/v1/users/embedded-user/messages`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ data }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function received(url: string, count: number): Promise<string[]> {
  const tokenRes = await fetch(`${url}/v1/tokens`, { method: 'POST', headers, body: '{"userId":"embedded-user"}' });
  const { token } = (await tokenRes.json()) as { token: string };
  const sse = await openSse(`${url}/v1/stream?token=${token}`);
  const events = await sse.waitFor(count);
  sse.close();
  return events.map((e) => e.id ?? '');
}

// Each test starts the server as a process twice (tsx compiles it each time): tens of seconds
// on a loaded machine.
describe('the embedded Redis', { timeout: 300_000 }, () => {
  it('is the default without REDIS_URL: a private append-only redis-server under DATA_DIR, reported at start-up', async () => {
    const ownDir = mkdtempSync(join(tmpdir(), 'postbox-default-'));
    try {
      const server = await spawnServer({ DATA_DIR: ownDir });
      try {
        const pid = Number(readFileSync(join(ownDir, 'redis.pid'), 'utf8').trim());
        expect(alive(pid)).toBe(true);
        expect(server.output()).toContain(`Redis checked: the embedded redis-server at ${join(ownDir, 'redis.sock')}`);
        expect(server.output()).toContain('append-only, fsync on every write: survives a restart and a machine crash');
        expect(server.output()).not.toMatch(/nobody configured|6379/);
        const id = await enqueue(server.url, 'default');
        expect(await received(server.url, 1)).toEqual([id]);
      } finally {
        expect(await server.kill('SIGTERM')).toBe(0);
      }
    } finally {
      rmSync(ownDir, { recursive: true, force: true });
    }
  });

  it('keeps messages in its append-only file across a clean restart, and stops with the server', async () => {
    const { dataDir, env } = freshDataDir();
    const first = await spawnServer(env);
    const ids = [await enqueue(first.url, 1), await enqueue(first.url, 2)];
    const pid = redisPid(dataDir);
    expect(alive(pid)).toBe(true);
    expect(await first.kill('SIGTERM')).toBe(0);
    expect(alive(pid)).toBe(false);

    const second = await spawnServer(env);
    try {
      expect(await received(second.url, 2)).toEqual(ids);
    } finally {
      await second.kill('SIGTERM');
    }
  });

  it('adopts the redis-server a SIGKILLed run left behind instead of starting a second one on the same files', async () => {
    const { dataDir, env } = freshDataDir();
    const first = await spawnServer(env);
    const id = await enqueue(first.url, 3);
    const orphan = redisPid(dataDir);
    await first.kill('SIGKILL');
    expect(alive(orphan)).toBe(true);

    const second = await spawnServer(env);
    try {
      expect(redisPid(dataDir)).toBe(orphan);
      expect(second.output()).toMatch(/adopting the embedded redis-server/);
      expect(await received(second.url, 1)).toEqual([id]);
    } finally {
      expect(await second.kill('SIGTERM')).toBe(0);
    }
    expect(alive(orphan)).toBe(false);
  });
});

describe('waiting for the embedded Redis on a loaded machine', () => {
  it('takes a socket that accepted for listening even when this process looks late, after its timers', async () => {
    const { dataDir } = freshDataDir();
    const path = join(dataDir, 'listening.sock');
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const answer = isListening({ path });
      // The event loop held up for a second (a start-up on a loaded machine): when it runs again,
      // its timers come before the I/O that completed meanwhile.
      const until = Date.now() + 1000;
      while (Date.now() < until) {
        // busy
      }
      expect(await answer).toBe(true);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('gives up on a redis-server that never says it is ready, after readyTimeoutMs, and stops it', async () => {
    const { dataDir } = freshDataDir();
    // Stands in for a redis-server that hangs before it listens: it notes its pid and sleeps.
    const command = join(dataDir, 'silent-redis-server');
    writeFileSync(command, `#!/bin/sh\necho $$ > "${join(dataDir, 'silent.pid')}"\nexec sleep 600\n`);
    chmodSync(command, 0o755);
    await expect(startEmbeddedRedis(dataDir, pino({ level: 'silent' }), { command, readyTimeoutMs: 2000 })).rejects.toThrow(
      /did not say it accepts connections within 2000 ms/,
    );
    // Killed and waited for: gone, whether or not it had got as far as noting its pid.
    const pidFile = join(dataDir, 'silent.pid');
    if (existsSync(pidFile)) expect(alive(Number(readFileSync(pidFile, 'utf8').trim()))).toBe(false);
  });
});
