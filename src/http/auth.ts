import { timingSafeEqual, createHash } from 'node:crypto';
import type { Context, Next, ParameterizedContext } from 'koa';
import { AppError } from '../errors.js';
import { looksLikeAckCredential, type PushCredentials } from './push-credentials.js';
import type { Tokens } from './tokens.js';

export type Role = 'producer' | 'admin';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Credentials that matched a secret, remembered so the common case skips the hash. */
const MATCHED_MAX = 16;

/**
 * Compares a presented credential with known secrets in constant time:
 * hashing first makes lengths equal. The secrets are hashed once, here. A
 * credential that matched is remembered (every request of a producer carries
 * the same key, and a SHA-256 per request showed in profiles); one that did
 * not is never kept, so guessing costs the full comparison every time and
 * cannot grow the memory.
 */
function secretMatcher(...secrets: string[]): (presented: string) => boolean[] {
  const known = secrets.map(digest);
  const matched = new Map<string, boolean[]>();
  return (presented) => {
    const hit = matched.get(presented);
    if (hit !== undefined) return hit;
    const hashed = digest(presented);
    const result = known.map((k) => timingSafeEqual(hashed, k));
    if (result.some(Boolean) && matched.size < MATCHED_MAX) matched.set(presented, result);
    return result;
  };
}

export function bearer(ctx: Context): string | undefined {
  const header = ctx.get('authorization');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Guards producer or admin routes. A credential valid for another role (the
 * other key, a stream token) is 403; anything else is 401 with no detail.
 */
export function requireKey(role: Role, keys: { apiKey: string; adminKey: string }, tokens: Tokens) {
  const own = role === 'producer' ? keys.apiKey : keys.adminKey;
  const other = role === 'producer' ? keys.adminKey : keys.apiKey;
  const match = secretMatcher(own, other);
  return async (ctx: Context, next: Next): Promise<void> => {
    const presented = bearer(ctx);
    if (presented === undefined) throw new AppError('PB_ERR_UNAUTHENTICATED');
    const [isOwn, isOther] = match(presented);
    if (isOwn) return next();
    if (isOther || (await isToken(tokens, presented))) {
      throw new AppError('PB_ERR_FORBIDDEN');
    }
    throw new AppError('PB_ERR_UNAUTHENTICATED');
  };
}

async function isToken(tokens: Tokens, presented: string): Promise<boolean> {
  try {
    await tokens.verify(presented);
    return true;
  } catch {
    return false;
  }
}

/** Subscriber routes: the user comes from the stream token only (`?token=` or Bearer). */
export function requireStreamToken(keys: { apiKey: string; adminKey: string }, tokens: Tokens) {
  const match = secretMatcher(keys.apiKey, keys.adminKey);
  return async (ctx: ParameterizedContext<{ userId: string }>, next: Next): Promise<void> => {
    const query = ctx.query.token;
    const presented = (typeof query === 'string' && query !== '' ? query : undefined) ?? bearer(ctx);
    if (presented === undefined) throw new AppError('PB_ERR_TOKEN_INVALID', 'a stream token is required');
    if (match(presented).some(Boolean)) {
      throw new AppError('PB_ERR_FORBIDDEN', 'subscriber routes take a stream token, not a key');
    }
    ctx.state.userId = await tokens.verify(presented);
    return next();
  };
}

/**
 * `POST /v1/acks`: a stream token, or the ack credential of a Web Push (src/http/push-credentials.ts),
 * which sets `ctx.state.onlyId` to the one message it may ack. A credential is refused everywhere
 * else: the other subscriber routes check stream tokens only, and its signature is not one.
 */
export function requireAckAuth(keys: { apiKey: string; adminKey: string }, tokens: Tokens, credentials: PushCredentials | undefined) {
  const stream = requireStreamToken(keys, tokens);
  return async (ctx: ParameterizedContext<{ userId: string; onlyId?: string }>, next: Next): Promise<void> => {
    const presented = bearer(ctx);
    if (credentials === undefined || presented === undefined || !looksLikeAckCredential(presented)) return stream(ctx, next);
    const { userId, id } = await credentials.verify(presented);
    ctx.state.userId = userId;
    ctx.state.onlyId = id;
    return next();
  };
}
