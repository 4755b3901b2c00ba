import { describe, expect, it } from 'vitest';
import { decodeReceipt, outboxCounter, receiptSpec, specOn, specWants } from '../../src/queue/receipts.js';
import { batchJobId, eventsOf } from '../../src/queue/webhook-outbox.js';

// The receipt text the scripts write (settle() in src/queue/lua/includes/receipts.lua), decoded.
const id = '1763700000000-3';
const iso = (ms: number) => new Date(ms).toISOString();

describe('receipt spec', () => {
  it('tells the scripts the retention, the cap and the webhook events as letters', () => {
    expect(receiptSpec(undefined)).toBe('0 1 -');
    const spec = receiptSpec({ retentionMs: 86_400_000, maxPerUser: 10_000, webhookEvents: ['message.acked', 'message.delivered'] });
    expect(spec).toBe('86400000 10000 af');
    expect(specWants(spec, 'message.acked')).toBe(true);
    expect(specWants(spec, 'message.dead')).toBe(false);
    expect(specOn(spec)).toBe(true);
    expect(specOn(receiptSpec({ retentionMs: 0, maxPerUser: 5, webhookEvents: [] }))).toBe(false);
    expect(specOn(receiptSpec({ retentionMs: 0, maxPerUser: 5, webhookEvents: ['message.dead'] }))).toBe(true);
  });

  it('counts the events a pop or an ack appended for the events asked', () => {
    const count = outboxCounter(receiptSpec({ retentionMs: 0, maxPerUser: 1, webhookEvents: ['message.expired', 'message.delivered'] }));
    expect(count.acked(5)).toBe(0);
    expect(count.popped({ expired: 2, dead: 1, deliveries: [{ attempts: 1 }, { attempts: 2 }, { attempts: 1 }] })).toBe(4);
  });
});

describe('decodeReceipt', () => {
  it('reads an acked receipt, times relative to the id', () => {
    expect(decodeReceipt(id, 'a:1520:1:2:30:', 1763700001520, 60_000)).toEqual({
      id,
      state: 'acked',
      deliveries: 1,
      attempts: 2,
      enqueuedAt: iso(1763700000000),
      firstDeliveredAt: iso(1763700000030),
      ackedAt: iso(1763700001520),
    });
  });

  it('reads a dead receipt with its reason, and an expired one never written', () => {
    expect(decodeReceipt(id, 'd:9000:5:6:10:max-deliveries', 1763700009000, 60_000)).toMatchObject({
      state: 'dead',
      reason: 'max-deliveries',
      deadAt: iso(1763700009000),
    });
    const expired = decodeReceipt(id, 'x:100:0:0::', 1763700000100, 60_000);
    expect(expired).toMatchObject({ state: 'expired', attempts: 0, expiredAt: iso(1763700000100) });
    expect(expired?.firstDeliveredAt).toBeUndefined();
  });

  it('treats a receipt past the retention, or malformed, as unknown', () => {
    expect(decodeReceipt(id, 'a:1000:1:1:5:', 1763700001000 + 60_000, 60_000)).toBeUndefined();
    expect(decodeReceipt(id, 'a:1000:1:1:5:', 1763700001000 + 59_999, 60_000)).toBeDefined();
    expect(decodeReceipt(id, 'q:1:1:1::', 1763700000001, 60_000)).toBeUndefined();
    expect(decodeReceipt(id, 'a:not-a-number:1:1::', 1763700000001, 60_000)).toBeUndefined();
  });
});

describe('outbox entries', () => {
  it('become one webhook event per message, with a stable id', () => {
    const items = `${id}=a:1520:1:1:30: 1763700000001-0=a:1519:2:3:5:`;
    const events = eventsOf('u-42', 'a', items);
    expect(events).toEqual([
      {
        id: `u-42/${id}/message.acked`,
        type: 'message.acked',
        timestamp: iso(1763700001520),
        data: {
          userId: 'u-42',
          id,
          state: 'acked',
          deliveries: 1,
          attempts: 1,
          enqueuedAt: iso(1763700000000),
          firstDeliveredAt: iso(1763700000030),
          ackedAt: iso(1763700001520),
        },
      },
      expect.objectContaining({ id: 'u-42/1763700000001-0/message.acked', data: expect.objectContaining({ attempts: 3 }) }),
    ]);
    expect(eventsOf('u-42', 'a', items)).toEqual(events);
  });

  it('gives message.delivered the first write as its time, and drops what it cannot read', () => {
    const [delivered] = eventsOf('u', 'f', `${id}=f:12:0:1:10:`);
    expect(delivered).toMatchObject({ type: 'message.delivered', timestamp: iso(1763700000010), data: { state: 'inflight', attempts: 1 } });
    expect(eventsOf('u', 'z', `${id}=z:1:1:1::`)).toEqual([]);
    expect(eventsOf('u', 'a', `not-an-id=a:1:1:1:: ${id}=x:1:0:0::`)).toEqual([]);
    expect(eventsOf('u', 'a', `${id}=a:not-a-number:1:1::`)).toEqual([]);
  });

  it('names a batch by its events, so the same batch made twice is one job', () => {
    const a = eventsOf('u', 'a', `${id}=a:1:1:1::`);
    const b = eventsOf('u', 'a', `1763700000000-4=a:1:1:1::`);
    expect(batchJobId(a)).toBe(batchJobId(eventsOf('u', 'a', `${id}=a:1:1:1::`)));
    expect(batchJobId(a)).not.toBe(batchJobId(b));
    expect(batchJobId(a)).toMatch(/^b-[A-Za-z0-9_-]{32}$/);
  });
});
