import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { AppError } from '../errors.js';
import type { Clock } from '../clock.js';

export interface Tokens {
  /** Signs a stream token for `userId`; `ttlSeconds` past now it expires. */
  issue(userId: string, ttlSeconds: number): Promise<{ token: string; expiresAt: string }>;
  /** The user of a valid token; throws PB_ERR_TOKEN_INVALID otherwise. */
  verify(token: string): Promise<string>;
}

/** HS256 stream tokens: `sub` is the user, `exp` is required. */
export function createTokens(secret: string, clock: Clock): Tokens {
  const key = new TextEncoder().encode(secret);
  return {
    async issue(userId, ttlSeconds) {
      const iat = Math.floor(clock.now() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key);
      return { token, expiresAt: new Date(exp * 1000).toISOString() };
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: ['HS256'],
          requiredClaims: ['sub', 'exp'],
          currentDate: new Date(clock.now()),
        });
        if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw new Error('empty sub');
        return payload.sub;
      } catch (err) {
        const reason = err instanceof joseErrors.JWTExpired ? 'stream token has expired' : undefined;
        throw new AppError('PB_ERR_TOKEN_INVALID', reason, { cause: err });
      }
    },
  };
}
