import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSse } from '../helpers/read-sse.js';
import { spawnServer, TEST_KEYS } from '../helpers/spawn-server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'postbox-embedded-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const env = { REDIS_URL: 'embedded', DATA_DIR: dataDir };
const headers = { authorization: `Bearer ${TEST_KEYS.API_KEY}`, 'content-type': 'application/json' };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const redisPid = () => Number(readFileSync(join(dataDir, 'redis.pid'), 'utf8').trim());

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
  const events = await sse.waitFor(count, 10_000);
  sse.close();
  return events.map((e) => e.id ?? '');
}

describe('the embedded Redis', () => {
  it('is the default without REDIS_URL: a private append-only redis-server under DATA_DIR, reported at start-up', async () => {
    const ownDir = mkdtempSync(join(tmpdir(), 'postbox-default-'));
    try {
      const server = await spawnServer({ DATA_DIR: ownDir });
      try {
        const pid = Number(readFileSync(join(ownDir, 'redis.pid'), 'utf8').trim());
        expect(alive(pid)).toBe(true);
        expect(server.output()).toContain(`Redis checked: the embedded redis-server at ${join(ownDir, 'redis.sock')}`);
        expect(server.output()).toContain('append-only (appendfsync everysec)');
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
    const first = await spawnServer(env);
    const ids = [await enqueue(first.url, 1), await enqueue(first.url, 2)];
    const pid = redisPid();
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
    const first = await spawnServer(env);
    const id = await enqueue(first.url, 3);
    const orphan = redisPid();
    await first.kill('SIGKILL');
    expect(alive(orphan)).toBe(true);

    const second = await spawnServer(env);
    try {
      expect(redisPid()).toBe(orphan);
      expect(second.output()).toMatch(/adopting the embedded redis-server/);
      const ids = await received(second.url, 3);
      expect(ids).toContain(id);
    } finally {
      expect(await second.kill('SIGTERM')).toBe(0);
    }
    expect(alive(orphan)).toBe(false);
  });
});
