import { describe, expect, it } from 'vitest';
import { useNode, useRedis } from '../helpers/use-node.js';

const redis = useRedis();
const openNode = useNode({}, { redis });
const strictNode = useNode({ CORS_ORIGINS: 'https://app.example.com,https://other.example.com' }, { redis });

describe('CORS on subscriber routes', () => {
  it('lets a page on any origin open a stream and ack by default', async () => {
    const open = openNode.app;
    const token = await open.token('cors-user');
    const id = await open.enqueue('cors-user', 'hi');
    const sse = await open.openStream('cors-user', { token, headers: { origin: 'https://app.example.com' } });
    expect(sse.headers.get('access-control-allow-origin')).toBe('*');
    await sse.waitFor(1);
    sse.close();
    const preflight = await fetch(`${open.url}/v1/acks`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    const ack = await fetch(`${open.url}/v1/acks`, {
      method: 'POST',
      headers: { origin: 'https://app.example.com', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ids: [id] }),
    });
    expect(ack.headers.get('access-control-allow-origin')).toBe('*');
    expect(await ack.json()).toEqual({ acked: 1 });
  });

  it('answers errors with the CORS header too, so the page can read them', async () => {
    const open = openNode.app;
    const res = await fetch(`${open.url}/v1/acks`, {
      method: 'POST',
      headers: { origin: 'https://app.example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ ids: ['1-0'] }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('allows only the configured origins when CORS_ORIGINS lists them', async () => {
    const strict = strictNode.app;
    const token = await strict.token('cors-strict');
    const allowed = await fetch(`${strict.url}/v1/acks`, {
      method: 'OPTIONS',
      headers: { origin: 'https://other.example.com', 'access-control-request-method': 'POST' },
    });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://other.example.com');
    expect(allowed.headers.get('vary')).toMatch(/Origin/);
    const refused = await fetch(`${strict.url}/v1/acks`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'POST' },
    });
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    const sse = await strict.openStream('cors-strict', { token, headers: { origin: 'https://evil.example.com' } });
    expect(sse.headers.get('access-control-allow-origin')).toBeNull();
    sse.close();
  });

  it('does not add CORS headers to producer routes', async () => {
    const open = openNode.app;
    const res = await open.produce('/v1/tokens', { userId: 'x' }, { headers: { origin: 'https://app.example.com' } });
    expect(res.status).toBe(201);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});
