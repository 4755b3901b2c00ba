import { describe, expect, it } from 'vitest';
import { createKeys, enqueuedAtOf } from '../../src/queue/keys.js';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({ DRAIN_INTERVAL_MS: 50, DEDUP_WINDOW_MS: 1500 });

describe('enqueue', () => {
  it('answers 201 with the id, user and time', async () => {
    const { app } = node;
    const before = Date.now();
    const res = await app.produce('/v1/users/user@example.com/messages', { data: { a: 1 }, event: 'greeting' });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { id: string; userId: string; enqueuedAt: string };
    expect(body.userId).toBe('user@example.com');
    expect(body.id).toMatch(/^\d+-\d+$/);
    expect(Date.parse(body.enqueuedAt)).toBeGreaterThanOrEqual(before - 5);
    expect(Number(body.id.split('-')[0])).toBe(Date.parse(body.enqueuedAt));
  });

  it('accepts any JSON value as data, null included, and keeps it exact', async () => {
    const { app } = node;
    const values = [null, 0, 'text with\nnewline and \r CR', [1, { b: [true] }], { nested: { ü: '✓' } }];
    for (const v of values) await app.enqueue('shapes', v);
    const sse = await app.openStream('shapes');
    const events = await sse.waitFor(values.length);
    expect(events.map((e) => JSON.parse(e.data))).toEqual(values);
    sse.close();
  });

  it('gives the first id again for a repeated idempotency key, and a new one after the window', async () => {
    const { app } = node;
    const first = await app.produce('/v1/users/idem/messages', { data: 'once', key: 'order-42' });
    expect(first.status).toBe(201);
    const { id } = (await first.json()) as { id: string };
    const again = await app.produce('/v1/users/idem/messages', { data: 'once', key: 'order-42' });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    // The key is per user: another user's same key is a new message.
    const other = await app.produce('/v1/users/idem-2/messages', { data: 'once', key: 'order-42' });
    expect(other.status).toBe(201);
    const client = node.redis.client();
    expect(await client.xlen('pb:{idem}:m')).toBe(1);
    // The record lives DEDUP_WINDOW_MS (1500), as a Redis key with that expiry: once Redis has dropped it, the window is over.
    const record = createKeys('pb').idempotency('idem', 'order-42');
    expect(await client.exists(record)).toBe(1);
    await waitUntil(async () => (await client.exists(record)) === 0, 'the idempotency record expires');
    const later = await app.produce('/v1/users/idem/messages', { data: 'once', key: 'order-42' });
    expect(later.status).toBe(201);
    expect(((await later.json()) as { id: string }).id).not.toBe(id);
  });

  it('enqueues a batch for many users in order, with ids in request order', async () => {
    const { app } = node;
    const messages = Array.from({ length: 300 }, (_, i) => ({ userId: `batch-${i % 3}`, data: i, event: 'b' }));
    const res = await app.produce('/v1/messages', { messages });
    expect(res.status).toBe(201);
    const { ids } = (await res.json()) as { ids: string[] };
    expect(ids).toHaveLength(300);
    expect(new Set(ids).size).toBeGreaterThan(0);
    const sse = await app.openStream('batch-1');
    const events = await sse.waitFor(100);
    expect(events.map((e) => Number(e.data))).toEqual(messages.map((m) => m.data).filter((n) => n % 3 === 1));
    expect(events.map((e) => e.id)).toEqual(ids.filter((_, i) => i % 3 === 1));
    sse.close();
  });

  it('drops a message past its ttlMs instead of delivering it late', async () => {
    const { app } = node;
    const staleId = await app.enqueue('ttl-user', 'stale', { ttlMs: 200 });
    const freshId = await app.enqueue('ttl-user', 'fresh', { ttlMs: 60_000 });
    // Its id is its enqueue time, on the clock this in-process node reads too.
    await waitUntil(() => Date.now() > enqueuedAtOf(staleId) + 200, 'the first message is past its ttlMs');
    const sse = await app.openStream('ttl-user');
    const [event] = await sse.waitFor(1);
    // The stale one is older: in this FIFO it would have come first.
    expect(event!.id).toBe(freshId);
    await waitUntil(async () => (await app.metric('postbox_messages_expired_total')) === 1, 'the drop is counted');
    expect(await app.counts('ttl-user')).toMatchObject({ waiting: 0, inflight: 1 });
    sse.close();
  });

  it('issues tokens with the requested lifetime', async () => {
    const { app } = node;
    const before = Date.now();
    const res = await app.produce('/v1/tokens', { userId: 'tok', ttlSeconds: 60 });
    const after = Date.now();
    expect(res.status).toBe(201);
    const body = (await res.json()) as { token: string; expiresAt: string };
    // Issued between `before` and `after`, in whole seconds (JWT exp), 60 s ahead.
    const expiresAt = Date.parse(body.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 60_000);
    expect(expiresAt).toBeLessThanOrEqual(after + 60_000);
  });

  it('reports health, readiness and metrics', async () => {
    const { app } = node;
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${app.url}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    for (const name of [
      'postbox_streams_open',
      'postbox_messages_enqueued_total',
      'postbox_messages_delivered_total',
      'postbox_messages_acked_total',
      'postbox_enqueue_to_write_seconds_bucket',
    ]) {
      expect(metrics).toContain(name);
    }
  });
});
