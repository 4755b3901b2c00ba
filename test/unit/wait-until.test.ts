import { describe, expect, it } from 'vitest';
import { eventually, waitUntil } from '../helpers/wait-until.js';

describe('waitUntil', () => {
  it('returns once a sync or async check passes, polling until then', async () => {
    let calls = 0;
    await waitUntil(() => (calls += 1) >= 3, 'the third call', { intervalMs: 1 });
    expect(calls).toBe(3);
    let asyncCalls = 0;
    await waitUntil(async () => (asyncCalls += 1) >= 2, 'the second call', { intervalMs: 1 });
    expect(asyncCalls).toBe(2);
  });

  it('treats a throwing check as not yet, and a check that returns nothing as passed', async () => {
    let seen = 0;
    await waitUntil(
      () => {
        seen += 1;
        expect(seen).toBe(3);
      },
      'seen is 3',
      { intervalMs: 1 },
    );
    expect(seen).toBe(3);
  });

  it('names what it waited for and what the last check saw when it gives up', async () => {
    await expect(waitUntil(() => false, 'pigs fly', { timeoutMs: 30, intervalMs: 5 })).rejects.toThrow(
      /timed out after 30 ms waiting until pigs fly; the last check returned false/,
    );
    await expect(
      waitUntil(() => expect([1, 2]).toHaveLength(3), 'three items', { timeoutMs: 30, intervalMs: 5 }),
    ).rejects.toThrow(/waiting until three items; the last check threw expected \[ 1, 2 \] to have a length of 3/);
  });
});

describe('eventually', () => {
  it('returns the first value read that is accepted', async () => {
    let n = 0;
    expect(await eventually(() => (n += 1), (v) => v >= 3, 'three', { intervalMs: 1 })).toBe(3);
  });

  it('shows the last value read when it gives up', async () => {
    await expect(eventually(async () => ({ left: 2 }), (v) => v.left === 0, 'none left', { timeoutMs: 30, intervalMs: 5 })).rejects.toThrow(
      /waiting until none left; the last check threw last seen: \{"left":2\}/,
    );
  });
});
