import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Clock } from '../clock.js';

/** Name of the admin session cookie. */
export const ADMIN_COOKIE = 'pb_admin';

/** Lifetime of an admin session cookie, seconds (12 h). */
export const ADMIN_SESSION_SECONDS = 12 * 3600;

/**
 * Admin session cookies, for the one place a browser cannot send a Bearer
 * header: the bull-board pages under /admin/jobs (a plain link). The admin
 * page sets it once signed in (`POST /admin/session` with the Bearer key).
 *
 * The value is `<expiry ms>.<HMAC-SHA256(ADMIN_KEY, expiry)>`: it never holds
 * the key, it expires on its own, and changing ADMIN_KEY revokes every cookie.
 * HttpOnly (scripts cannot read it), SameSite=Strict (no other site can make
 * the browser send it), Path=/admin, Secure when the request came over TLS.
 * The admin API itself accepts only the Bearer header, so the cookie cannot be
 * used for cross-site requests that change data.
 */
export interface AdminSessions {
  /** Sets the cookie on the response. */
  open(ctx: Context): void;
  /** Clears the cookie. */
  close(ctx: Context): void;
  /** True when the request carries a valid, unexpired session cookie. */
  valid(ctx: Context): boolean;
}

export function createAdminSessions(adminKey: string, clock: Clock): AdminSessions {
  const sign = (expiry: string) => createHmac('sha256', adminKey).update(`pb_admin:${expiry}`).digest('base64url');

  function cookie(ctx: Context, value: string, maxAge: number): void {
    const secure = ctx.protocol === 'https' ? '; Secure' : '';
    ctx.append('Set-Cookie', `${ADMIN_COOKIE}=${value}; Path=/admin; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure}`);
  }

  return {
    open(ctx) {
      const expiry = String(clock.now() + ADMIN_SESSION_SECONDS * 1000);
      cookie(ctx, `${expiry}.${sign(expiry)}`, ADMIN_SESSION_SECONDS);
    },

    close(ctx) {
      cookie(ctx, '', 0);
    },

    valid(ctx) {
      const value = readCookie(ctx.get('cookie'), ADMIN_COOKIE);
      const match = value === undefined ? null : /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(value);
      if (match === null) return false;
      const [, expiry = '', mac = ''] = match;
      if (Number(expiry) <= clock.now()) return false;
      return timingSafeEqual(Buffer.from(mac), Buffer.from(sign(expiry)));
    },
  };
}

function readCookie(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Lets a request through with a valid session cookie, else hands it to `fallback` (the Bearer check). */
export function cookieOr(sessions: AdminSessions, fallback: (ctx: Context, next: Next) => Promise<void>) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (sessions.valid(ctx)) return next();
    return fallback(ctx, next);
  };
}
