import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSnapshot, snapshotDiff } from '../helpers/redis-snapshot.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// Bodies small on the wire and huge once read: compression bombs, a flood of keys, a long string.
let redis: TestRedis;
let app: TestApp;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { BODY_MAX_BYTES: 65_536 });
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

async function send(body: Buffer | string, headers: Record<string, string>) {
  const res = await fetch(`${app.url}/v1/users/bomb/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${app.config.API_KEY}`, 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const { error } = (await res.json()) as { error?: { code: string } };
  return `${res.status} ${error?.code ?? ''}`.trim();
}

describe('body bombs', () => {
  it('counts BODY_MAX_BYTES after decompression: a gzip or deflate bomb is a 413, nothing stored', async () => {
    const before = await redisSnapshot(redis.client(), 'pb');
    const huge = `{"data":"${'0'.repeat(50 * 1024 * 1024)}"}`;
    const gzip = gzipSync(huge);
    expect(gzip.length).toBeLessThan(100_000);
    expect(await send(gzip, { 'content-encoding': 'gzip' })).toBe('413 PB_ERR_BODY_TOO_LARGE');
    expect(await send(deflateSync(huge), { 'content-encoding': 'deflate' })).toBe('413 PB_ERR_BODY_TOO_LARGE');
    expect(snapshotDiff(before, await redisSnapshot(redis.client(), 'pb'))).toEqual([]);
    // A small compressed body is fine.
    expect(await send(gzipSync('{"data":"zipped"}'), { 'content-encoding': 'gzip' })).toBe('201');
  });

  it('refuses an encoding it cannot read with 415, and bytes that are not what they claim with 400', async () => {
    expect(await send('{"data":1}', { 'content-encoding': 'x-unknown' })).toBe('415 PB_ERR_UNSUPPORTED_MEDIA_TYPE');
    expect(await send('{"data":1}', { 'content-encoding': 'gzip' })).toBe('400 PB_ERR_BAD_JSON');
  });

  it('answers a flood of keys or one long string within the limits without trouble', async () => {
    const keys = `{"data":{${Array.from({ length: 6000 }, (_, i) => `"k${i}":1`).join(',')}}}`;
    expect(Buffer.byteLength(keys)).toBeLessThan(65_536);
    expect(await send(keys, {})).toBe('201');
    expect(await send(`{"data":"${'x'.repeat(60_000)}"}`, {})).toBe('201');
  });
});
