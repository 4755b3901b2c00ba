import { describe, expect, it, vi } from 'vitest';
import { backoffDelay, createIdMemory, decodeTokenExpiry } from '../../src/client/postbox.js';

describe('createIdMemory', () => {
  it('remembers ids up to its size and forgets the oldest first', () => {
    const memory = createIdMemory(3);
    for (const id of ['1-0', '2-0', '3-0', '4-0']) memory.add(id);
    expect(memory.size).toBe(3);
    expect(memory.has('1-0')).toBe(false);
    expect(['2-0', '3-0', '4-0'].every((id) => memory.has(id))).toBe(true);
  });

  it('treats an id added again as the newest', () => {
    const memory = createIdMemory(2);
    memory.add('1-0');
    memory.add('2-0');
    memory.add('1-0');
    memory.add('3-0');
    expect(memory.has('1-0')).toBe(true);
    expect(memory.has('2-0')).toBe(false);
  });

  it('forgets a deleted id', () => {
    const memory = createIdMemory(2);
    memory.add('1-0');
    memory.delete('1-0');
    expect(memory.has('1-0')).toBe(false);
    expect(memory.size).toBe(0);
  });
});

describe('backoffDelay', () => {
  it('doubles the ceiling per attempt from minMs up to maxMs (full jitter)', () => {
    const top = (attempt: number) => backoffDelay(attempt, { minMs: 500, maxMs: 30_000 }, () => 0.999999);
    expect([1, 2, 3, 4].map(top)).toEqual([499, 999, 1999, 3999]);
    expect(top(7)).toBe(29_999); // 500·2^6 = 32000, capped
    expect(top(10_000)).toBe(29_999); // 2^9999 is Infinity, still capped
  });

  it('can pick any delay from zero to the ceiling', () => {
    expect(backoffDelay(3, {}, () => 0)).toBe(0);
    expect(backoffDelay(3, {}, () => 0.5)).toBe(500);
  });

  it('defaults to 250 ms .. 10 s with Math.random', () => {
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    try {
      expect(backoffDelay(1)).toBe(249);
      expect(backoffDelay(50)).toBe(9_999);
    } finally {
      random.mockRestore();
    }
  });
});

describe('decodeTokenExpiry', () => {
  const jwt = (payload: object) =>
    `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.signature`;

  it('reads exp from the JWT payload, in ms', () => {
    expect(decodeTokenExpiry(jwt({ sub: 'user-42', exp: 1_732_150_000 }))).toBe(1_732_150_000_000);
  });

  it('reads base64url payloads that need - and _ and no padding', () => {
    const token = jwt({ sub: '>>>???~~~', exp: 2_000_000_000 });
    expect(token.split('.')[1]).toMatch(/[-_]/);
    expect(decodeTokenExpiry(token)).toBe(2_000_000_000_000);
  });

  it('gives undefined for opaque tokens, bad payloads and a missing exp', () => {
    expect(decodeTokenExpiry('opaque')).toBeUndefined();
    expect(decodeTokenExpiry('a.!!!.c')).toBeUndefined();
    expect(decodeTokenExpiry(jwt({ sub: 'x' }))).toBeUndefined();
    expect(decodeTokenExpiry(jwt({ exp: '2030' }))).toBeUndefined();
  });
});
