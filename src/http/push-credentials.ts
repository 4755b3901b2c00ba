import { createHmac } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';

/**
 * The ack credential a Web Push carries: a JWT that acks one message of one user and does
 * nothing else. A service worker woken by a push has no stream token (the page that had one
 * may be long closed), yet it should ack the message when the user opens the notification.
 *
 * It can never pass for a stream token: it is signed with a key derived from TOKEN_SECRET
 * (HMAC-SHA256 of a fixed label), not TOKEN_SECRET itself, so the stream token check fails on
 * its signature; and its `typ` header and `aud` claim name it. `POST /v1/acks` accepts it for
 * exactly its message id (src/http/auth.ts).
 */
export interface PushCredentials {
  /** Signs the credential for message `id` of `userId`, valid PUSH_ACK_TTL_SECONDS. */
  issue(userId: string, id: string): Promise<string>;
  /** The user and message of a valid credential; throws PB_ERR_TOKEN_INVALID otherwise. */
  verify(credential: string): Promise<{ userId: string; id: string }>;
}

/** JOSE `typ` (RFC 7515 §4.1.9) of ack credentials; stream tokens say `JWT`. */
export const PUSH_ACK_TYP = 'pb-push-ack+jwt';
const AUDIENCE = 'postbox:push-ack';
const KEY_LABEL = 'postbox push ack credential v1';
/** The JOSE header of every credential, base64url. */
const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: PUSH_ACK_TYP })).toString('base64url');

/** Whether a presented bearer says it is an ack credential (unverified: only to pick the check to run). */
export function looksLikeAckCredential(token: string): boolean {
  try {
    return decodeProtectedHeader(token).typ === PUSH_ACK_TYP;
  } catch {
    return false;
  }
}

export function createPushCredentials(secret: string, clock: Clock, ttlSeconds: number): PushCredentials {
  const key = createHmac('sha256', secret).update(KEY_LABEL).digest();
  return {
    async issue(userId, id) {
      // One per push: signed with node:crypto's HMAC (a few µs), as jose would sign it (RFC 7519,
      // JWS compact, RFC 7515 §7.1) but without its WebCrypto round trip (about a millisecond of CPU).
      const iat = Math.floor(clock.now() / 1000);
      const claims = { eid: id, sub: userId, aud: AUDIENCE, iat, exp: iat + ttlSeconds };
      const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
      return `${signingInput}.${createHmac('sha256', key).update(signingInput).digest('base64url')}`;
    },
    async verify(credential) {
      try {
        const { payload } = await jwtVerify(credential, key, {
          algorithms: ['HS256'],
          typ: PUSH_ACK_TYP,
          audience: AUDIENCE,
          requiredClaims: ['sub', 'exp', 'eid'],
          currentDate: new Date(clock.now()),
        });
        if (typeof payload.sub !== 'string' || payload.sub === '' || typeof payload.eid !== 'string') {
          throw new Error('sub and eid must be strings');
        }
        return { userId: payload.sub, id: payload.eid };
      } catch (err) {
        const reason = err instanceof joseErrors.JWTExpired ? 'push ack credential has expired' : 'push ack credential is invalid';
        throw new AppError('PB_ERR_TOKEN_INVALID', reason, { cause: err });
      }
    },
  };
}
