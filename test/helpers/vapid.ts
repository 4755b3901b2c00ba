import { timingSafeEqual } from 'node:crypto';
import { compactVerify, decodeJwt, importJWK } from 'jose';

/** RFC 8292 §2: the `exp` claim MUST NOT be more than 24 hours after the request, in seconds. */
const MAX_LIFETIME_S = 24 * 60 * 60;

/** What a push service learns from an `Authorization: vapid t=…, k=…` header. */
export interface VapidCheck {
  /** Whether a `vapid` Authorization was sent at all (RFC 8292 §4.2: 401 when absent, 403 when invalid). */
  present: boolean;
  valid: boolean;
  /** Claims as sent, reported even when invalid so a failing test can say why. */
  sub?: string;
  aud?: string;
  /** Expiry, in seconds since the epoch. */
  exp?: number;
  /** The `k` parameter: the application server's public key, base64url (uncompressed P-256 point). */
  key?: string;
  /** Why it is invalid; absent when valid. */
  reason?: string;
}

export interface VerifyVapidOptions {
  /** The origin of the push resource the request was sent to: `aud` must equal it (RFC 8292 §2). */
  audience: string;
  /**
   * For a restricted subscription (RFC 8292 §4), the key given to subscribe():
   * `k` must be that key. @defaultValue undefined: any key that verifies the signature
   */
  applicationServerKey?: string;
  /** The time of the request, in seconds since the epoch. @defaultValue now */
  now?: number;
}

/** RFC 8292 §3: `vapid t=<JWT>, k=<key>`, auth-params separated by commas, values possibly quoted. */
function parseAuthorization(header: string): { t?: string; k?: string } | undefined {
  const match = /^vapid\s+(.*)$/is.exec(header.trim());
  if (!match) return undefined;
  const params: Record<string, string> = {};
  for (const part of match[1]!.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    params[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return { t: params.t, k: params.k };
}

function sameKey(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Checks a VAPID Authorization header as a push service does (RFC 8292): an ES256 JWT
 * whose signature verifies with the `k` key, `aud` the push resource's origin, `exp`
 * in the future and at most 24 h ahead, and for a restricted subscription `k` its key.
 */
export async function verifyVapid(authorization: string | undefined, options: VerifyVapidOptions): Promise<VapidCheck> {
  if (!authorization) return { present: false, valid: false, reason: 'no Authorization header' };
  const parsed = parseAuthorization(authorization);
  if (!parsed) return { present: false, valid: false, reason: 'Authorization is not of the vapid scheme' };
  const { t, k } = parsed;
  if (!t || !k) return { present: true, valid: false, reason: 'vapid needs both t and k' };

  const check: VapidCheck = { present: true, valid: false, key: k };
  try {
    const claims = decodeJwt(t);
    if (typeof claims.sub === 'string') check.sub = claims.sub;
    if (typeof claims.aud === 'string') check.aud = claims.aud;
    if (typeof claims.exp === 'number') check.exp = claims.exp;
  } catch {
    return { ...check, reason: 't is not a JWT' };
  }

  // RFC 8292 §3.2: k is the uncompressed point (X9.62: 0x04 || x || y, 65 bytes) of a P-256 key.
  const point = Buffer.from(k, 'base64url');
  if (point.length !== 65 || point[0] !== 0x04) return { ...check, reason: 'k is not an uncompressed P-256 point' };
  if (options.applicationServerKey && !sameKey(point, Buffer.from(options.applicationServerKey, 'base64url'))) {
    return { ...check, reason: 'k is not the applicationServerKey of this subscription' };
  }
  try {
    const key = await importJWK(
      { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') },
      'ES256',
    );
    await compactVerify(t, key, { algorithms: ['ES256'] });
  } catch (err) {
    return { ...check, reason: `signature does not verify with k: ${(err as Error).message}` };
  }

  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (check.aud !== options.audience) return { ...check, reason: `aud is ${check.aud}, not ${options.audience}` };
  if (check.exp === undefined) return { ...check, reason: 'no exp claim' };
  if (check.exp <= now) return { ...check, reason: `expired at ${check.exp}, now ${now}` };
  if (check.exp > now + MAX_LIFETIME_S) return { ...check, reason: `exp ${check.exp} is more than 24 h ahead of ${now}` };
  return { ...check, valid: true };
}
