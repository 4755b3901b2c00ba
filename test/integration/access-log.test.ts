import { expect, it } from 'vitest';
import { useNode } from '../helpers/use-node.js';

const node = useNode({}, { logs: 'debug' });

it('logs each request at debug level with its status and time, never the token in the query', async () => {
  const { app } = node;
  const token = await app.token('logged');
  await app.enqueue('logged', 'x');
  const sse = await app.openStream('logged', { token });
  await sse.waitFor(1);
  sse.close();
  await fetch(`${app.url}/v1/nope`);
  // Each line is written before its response goes out (a stream's when it opens).
  const requests = node.logs.filter((l) => l.msg === 'request');
  expect(requests).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ method: 'POST', path: '/v1/tokens', status: 201 }),
      expect.objectContaining({ method: 'POST', path: '/v1/users/logged/messages', status: 201 }),
      expect.objectContaining({ method: 'GET', path: '/v1/stream', status: 200 }),
      expect.objectContaining({ method: 'GET', path: '/v1/nope', status: 404 }),
    ]),
  );
  expect(requests.every((l) => typeof l.ms === 'number')).toBe(true);
  expect(JSON.stringify(node.logs)).not.toContain(token);
});
