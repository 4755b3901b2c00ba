import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { RedisSetupError } from '../../src/queue/redis-checks.js';
import { chooseRedis } from '../../src/redis-choice.js';
import { freePort, startRedis, type TestRedis } from '../helpers/start-redis.js';

// Which Redis a node takes when REDIS_URL does not say. The fallback address is pointed at a
// private redis-server of this file (never at 127.0.0.1:6379), and "redis-server is missing" is an
// executable name that is on no PATH.
const MISSING = 'postbox-no-such-redis-server';

let redis: TestRedis;
const dataDir = mkdtempSync(join(tmpdir(), 'postbox-choice-'));

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

function capture() {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const base = { REDIS_URL: undefined, REDIS_CLUSTER_NODES: undefined, DATA_DIR: dataDir } as const;

describe('choosing the Redis', () => {
  it('without REDIS_URL or redis-server, in development, takes the Redis found and warns what it keeps and where the keys go', async () => {
    // A Redis that keeps nothing on disk, like the one that lost a user's mail.
    const admin = redis.client();
    await admin.config('SET', 'appendonly', 'no');
    try {
      const { logger, lines } = capture();
      const choice = await chooseRedis({ ...base, NODE_ENV: 'development' }, logger, {
        command: MISSING,
        fallback: { host: '127.0.0.1', port: redis.port },
      });
      expect(choice.url).toBe(redis.url);
      expect(choice.embedded).toBeUndefined();
      expect(choice.report.fallback).toMatch(/REDIS_URL is unset and postbox-no-such-redis-server is not on PATH/);

      const config = testConfig({ NODE_ENV: 'development', KEY_PREFIX: 'found', API_KEY: 'k'.repeat(16) });
      const node = await createPostbox(config, { redisUrl: choice.url, logger, redisReport: choice.report });
      await node.close();
      const warning = lines.find((l) => l.level === 40 && /nobody configured/.test(l.msg));
      expect(warning?.msg).toContain(`the Redis it found at ${redis.url}`);
      expect(warning?.msg).toContain('nothing on disk (appendonly no, save ""): a restart loses every message');
      expect(warning?.msg).toContain('db 0, keys found:{<user>}:*');
      expect(warning?.msg).toContain('KEY_PREFIX=found');
      expect(warning?.msg).toContain('Set REDIS_URL');
      expect(warning?.redis).toMatchObject({ db: 0, keyPrefix: 'found', nodes: [{ appendonly: 'no', save: '' }] });
    } finally {
      await admin.config('SET', 'appendonly', 'yes');
    }
  });

  it('reports what it checked about a configured Redis at info, with its persistence', async () => {
    const { logger, lines } = capture();
    const config = testConfig({ NODE_ENV: 'development', KEY_PREFIX: 'named', API_KEY: 'k'.repeat(16) });
    const node = await createPostbox(config, { redisUrl: redis.url, logger });
    await node.close();
    const report = lines.find((l) => /^Redis checked/.test(l.msg));
    expect(report?.level).toBe(30);
    expect(report?.msg).toContain(redis.url);
    expect(report?.msg).toContain('append-only (appendfsync everysec): survives a restart');
    expect(report?.redis).toMatchObject({
      target: redis.url,
      keyPrefix: 'named',
      nodes: [{ appendonly: 'yes', appendfsync: 'everysec', maxmemoryPolicy: 'noeviction' }],
    });
    expect(String((report?.redis as { nodes: Array<{ version: string }> }).nodes[0]?.version)).toMatch(/^\d+\.\d+/);
  });

  it('in production refuses a Redis that keeps nothing on disk, unless ALLOW_VOLATILE_REDIS=1', async () => {
    const admin = redis.client();
    await admin.config('SET', 'appendonly', 'no');
    try {
      const secrets = { API_KEY: 'k'.repeat(16), ADMIN_KEY: 'a'.repeat(16), TOKEN_SECRET: 's'.repeat(32) };
      const refused = createPostbox(testConfig({ ...secrets, NODE_ENV: 'production', KEY_PREFIX: 'volatile' }), {
        redisUrl: redis.url,
        logger: capture().logger,
      });
      await expect(refused).rejects.toThrow(RedisSetupError);
      await expect(refused).rejects.toThrow(/keeps nothing on disk .*set ALLOW_VOLATILE_REDIS=1/);
      expect(await admin.keys('volatile:*'), 'a refused start writes nothing').toEqual([]);

      const { logger, lines } = capture();
      const config = testConfig({ ...secrets, NODE_ENV: 'production', KEY_PREFIX: 'volatile', ALLOW_VOLATILE_REDIS: 1 });
      const node = await createPostbox(config, { redisUrl: redis.url, logger });
      await node.close();
      expect(lines.find((l) => l.level === 40 && /keeps nothing on disk/.test(l.msg))?.msg).toContain('postbox is not durable on it');
    } finally {
      await admin.config('SET', 'appendonly', 'yes');
    }
  });

  it('never takes an unnamed Redis in production: it says to set REDIS_URL or install redis-server', async () => {
    const { logger } = capture();
    const chosen = chooseRedis({ ...base, NODE_ENV: 'production' }, logger, {
      command: MISSING,
      fallback: { host: '127.0.0.1', port: redis.port },
    });
    await expect(chosen).rejects.toThrow(RedisSetupError);
    await expect(chosen).rejects.toThrow(/set REDIS_URL .*install redis-server/);
  });

  it('fails with the settings to use when there is no redis-server and nothing answers', async () => {
    const { logger } = capture();
    const port = await freePort();
    const chosen = chooseRedis({ ...base, NODE_ENV: 'development' }, logger, {
      command: MISSING,
      fallback: { host: '127.0.0.1', port },
    });
    await expect(chosen).rejects.toThrow(new RegExp(`nothing answers on 127.0.0.1:${port}: set REDIS_URL`));
  });

  it('REDIS_URL=embedded without redis-server is an error, not a fallback', async () => {
    const { logger } = capture();
    const chosen = chooseRedis({ ...base, REDIS_URL: 'embedded', NODE_ENV: 'development' }, logger, {
      command: MISSING,
      fallback: { host: '127.0.0.1', port: redis.port },
    });
    await expect(chosen).rejects.toThrow(/REDIS_URL=embedded: postbox-no-such-redis-server is not on PATH/);
  });

  it('a REDIS_URL is used as given, and its password never reaches the report', async () => {
    const { logger, lines } = capture();
    const choice = await chooseRedis({ ...base, REDIS_URL: redis.url, NODE_ENV: 'development' }, logger, { command: MISSING });
    expect(choice).toEqual({ url: redis.url, report: {} });
    const admin = redis.client();
    await admin.config('SET', 'requirepass', 'sekrit-pass');
    try {
      const withPassword = `redis://:sekrit-pass@127.0.0.1:${redis.port}`;
      const config = testConfig({ NODE_ENV: 'development', API_KEY: 'k'.repeat(16) });
      const node = await createPostbox(config, { redisUrl: withPassword, logger });
      await node.close();
      const report = lines.find((l) => /^Redis checked/.test(l.msg));
      expect(report?.msg).toContain(`redis://:***@127.0.0.1:${redis.port}`);
      expect(JSON.stringify(lines)).not.toContain('sekrit-pass');
    } finally {
      await admin.auth('sekrit-pass');
      await admin.config('SET', 'requirepass', '');
    }
  });
});
