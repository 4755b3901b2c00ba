import { webcrypto } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';
import { USER_ID_PATTERN } from '../queue/keys.js';

export interface Tokens {
  /** Signs a stream token for `userId`; `ttlSeconds` past now it expires. */
  issue(userId: string, ttlSeconds: number): Promise<{ token: string; expiresAt: string }>;
  /** The user of a valid token; throws PB_ERR_TOKEN_INVALID otherwise. */
  verify(token: string): Promise<string>;
}

/** Verified tokens remembered, so an ack does not pay a WebCrypto HMAC each time. */
const VERIFIED_CACHE_SIZE = 10_000;

/** HS256 stream tokens: `sub` is the user, `exp` is required. */
export function createTokens(secret: string, clock: Clock): Tokens {
  // Imported once: given the raw bytes, jose imports a key on every call, which was half the CPU
  // of verifying a token (a stream open verifies one; a reconnect storm opens thousands a second).
  const key = webcrypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
    'verify',
  ]);
  // token → user and expiry (epoch ms); only tokens that passed jwtVerify enter.
  const verified = new Map<string, { userId: string; expiresAt: number }>();
  return {
    async issue(userId, ttlSeconds) {
      const iat = Math.floor(clock.now() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(await key);
      return { token, expiresAt: new Date(exp * 1000).toISOString() };
    },
    async verify(token) {
      const known = verified.get(token);
      if (known !== undefined) {
        if (clock.now() < known.expiresAt) return known.userId;
        verified.delete(token);
        throw new AppError('PB_ERR_TOKEN_INVALID', 'stream token has expired');
      }
      try {
        const { payload } = await jwtVerify(token, await key, {
          algorithms: ['HS256'],
          requiredClaims: ['sub', 'exp'],
          currentDate: new Date(clock.now()),
        });
        // Only the secret's holder can sign one, but a user id outside the pattern must never reach
        // a key's hash tag or a log line, whoever signed it.
        if (typeof payload.sub !== 'string' || !USER_ID_PATTERN.test(payload.sub)) throw new Error('sub is not a user id');
        if (verified.size >= VERIFIED_CACHE_SIZE) {
          // Maps iterate in insertion order: drop the oldest entry.
          const oldest = verified.keys().next().value;
          if (oldest !== undefined) verified.delete(oldest);
        }
        verified.set(token, { userId: payload.sub, expiresAt: (payload.exp ?? 0) * 1000 });
        return payload.sub;
      } catch (err) {
        const reason = err instanceof joseErrors.JWTExpired ? 'stream token has expired' : undefined;
        throw new AppError('PB_ERR_TOKEN_INVALID', reason, { cause: err });
      }
    },
  };
}
