import { describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import { AppError } from '../../src/errors.js';
import { createTokens } from '../../src/http/tokens.js';

function movableClock(start: number): Clock & { advance(ms: number): void } {
  let now = start;
  return { ...systemClock, now: () => now, advance: (ms) => (now += ms) };
}

const secret = 'a-token-secret-of-at-least-32-characters';

describe('stream tokens', () => {
  it('round-trips the user and refuses the token once it expires, cached or not', async () => {
    const clock = movableClock(Date.parse('2026-01-01T00:00:00Z'));
    const tokens = createTokens(secret, clock);
    const { token, expiresAt } = await tokens.issue('user-1', 60);
    expect(expiresAt).toBe('2026-01-01T00:01:00.000Z');
    expect(await tokens.verify(token)).toBe('user-1');
    expect(await tokens.verify(token)).toBe('user-1'); // from the cache
    clock.advance(61_000);
    await expect(tokens.verify(token)).rejects.toMatchObject({ code: 'PB_ERR_TOKEN_INVALID', status: 401 });
    // A fresh verifier (no cache) agrees.
    await expect(createTokens(secret, clock).verify(token)).rejects.toBeInstanceOf(AppError);
  });

  it('refuses a token signed with another secret', async () => {
    const other = createTokens('another-secret-of-at-least-32-characters', systemClock);
    const { token } = await other.issue('user-1', 60);
    await expect(createTokens(secret, systemClock).verify(token)).rejects.toMatchObject({ status: 401 });
  });
});
