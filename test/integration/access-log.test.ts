import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { buildClient, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { openSse } from '../helpers/read-sse.js';

let redis: TestRedis;
let app: TestApp;
const lines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  redis = await startRedis();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = testConfig({
    API_KEY: 'test-api-key-0123456789',
    ADMIN_KEY: 'test-admin-key-0123456789',
    TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
  });
  const node = await createPostbox(config, { redisUrl: redis.url, logger: pino({ level: 'debug' }, sink) });
  app = buildClient(node, config, await node.listen(0, '127.0.0.1'));
});
afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

it('logs each request at debug level with its status and time, never the token in the query', async () => {
  const token = await app.token('logged');
  await app.enqueue('logged', 'x');
  const sse = await openSse(app.streamUrl(token));
  await sse.waitFor(1);
  sse.close();
  await fetch(`${app.url}/v1/nope`);
  const requests = lines.filter((l) => l.msg === 'request');
  expect(requests).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ method: 'POST', path: '/v1/tokens', status: 201 }),
      expect.objectContaining({ method: 'POST', path: '/v1/users/logged/messages', status: 201 }),
      expect.objectContaining({ method: 'GET', path: '/v1/stream', status: 200 }),
      expect.objectContaining({ method: 'GET', path: '/v1/nope', status: 404 }),
    ]),
  );
  expect(requests.every((l) => typeof l.ms === 'number')).toBe(true);
  expect(JSON.stringify(lines)).not.toContain(token);
});
