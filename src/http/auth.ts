import { timingSafeEqual, createHash } from 'node:crypto';
import type { Context, Next } from 'koa';
import { AppError } from '../errors.js';
import type { Tokens } from './tokens.js';

export type Role = 'producer' | 'admin';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time comparison; hashing first makes lengths equal. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
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
  return async (ctx: Context, next: Next): Promise<void> => {
    const presented = bearer(ctx);
    if (presented === undefined) throw new AppError('PB_ERR_UNAUTHENTICATED');
    if (sameSecret(presented, own)) {
      ctx.state.role = role;
      return next();
    }
    if (sameSecret(presented, other) || (await isToken(tokens, presented))) {
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
  return async (ctx: Context, next: Next): Promise<void> => {
    const query = ctx.query.token;
    const presented = (typeof query === 'string' && query !== '' ? query : undefined) ?? bearer(ctx);
    if (presented === undefined) throw new AppError('PB_ERR_TOKEN_INVALID', 'a stream token is required');
    if (sameSecret(presented, keys.apiKey) || sameSecret(presented, keys.adminKey)) {
      throw new AppError('PB_ERR_FORBIDDEN', 'subscriber routes take a stream token, not a key');
    }
    ctx.state.userId = await tokens.verify(presented);
    return next();
  };
}
