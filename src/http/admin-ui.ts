import { readFile } from 'node:fs/promises';
import Router from '@koa/router';
import type { Context } from 'koa';
import { AppError } from '../errors.js';
import { createAdminSessions, cookieOr, type AdminSessions } from './admin-session.js';
import type { AppDeps } from './deps.js';
import type { Guards } from './guards.js';
import { createJobsBoard } from './jobs-board.js';

/** The page's files, served from disk next to this module (no build step). A Map: a request's file name must never find an inherited property. */
const ASSETS = new Map<string, { file: string; type: string }>([
  ['page', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['admin.js', { file: 'admin.js', type: 'text/javascript; charset=utf-8' }],
  ['admin.css', { file: 'admin.css', type: 'text/css; charset=utf-8' }],
]);

/** Scripts and styles come from this origin only; nothing inline, no CDN, no framing. */
const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/**
 * bull-board's page links IBM Plex from Google Fonts: a request off the machine on every visit,
 * which fails offline. Without it the board falls back to the system's sans-serif and monospace.
 */
const OFFSITE_FONTS = /<link\s+href="https:\/\/fonts\.googleapis\.com\/[^"]*"\s+rel="stylesheet"\s*\/?>\s*/g;

/**
 * The board's page: its scripts, styles, images and API from this origin only. It needs inline
 * styles (style attributes and a <style> in its loading screen) and its own <base href>.
 */
const BOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
].join('; ');

/** A Koa middleware serving bull-board under /admin/jobs (see jobs-board.ts). */
export type JobsBoard = (ctx: Context, next: () => Promise<unknown>) => Promise<unknown>;

/**
 * The admin page and its session: `GET /admin` (no auth: the page asks for
 * the key and calls the API with it), its assets, `POST /admin/session` (sets
 * the cookie bull-board needs), `DELETE /admin/session`, and `/admin/jobs`
 * (bull-board over the BullMQ queues; the session cookie or the Bearer key).
 */
export function adminUiRoutes(deps: AppDeps, guards: Guards): Router {
  const { config, clock } = deps;
  const router = new Router();
  const auth = guards.admin;
  const sessions: AdminSessions = createAdminSessions(config.ADMIN_KEY, clock);
  const cache = new Map<string, Buffer>();

  async function serve(ctx: Context, name: string): Promise<void> {
    const asset = ASSETS.get(name);
    if (asset === undefined) throw new AppError('PB_ERR_NOT_FOUND');
    let bytes = cache.get(name);
    if (bytes === undefined) {
      bytes = await readFile(new URL(`./admin-page/${asset.file}`, import.meta.url));
      cache.set(name, bytes);
    }
    ctx.type = asset.type;
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (name === 'page') {
      ctx.set('Content-Security-Policy', PAGE_CSP);
      ctx.set('X-Frame-Options', 'DENY');
    }
    ctx.body = bytes;
  }

  router.get('/admin', (ctx) => serve(ctx, 'page'));
  router.get('/admin/assets/:file', (ctx) => serve(ctx, ctx.params.file ?? ''));

  router.post('/admin/session', auth, (ctx) => {
    sessions.open(ctx);
    ctx.status = 204;
  });
  router.delete('/admin/session', (ctx) => {
    sessions.close(ctx);
    ctx.status = 204;
  });

  const board = createJobsBoard(deps.jobQueues);
  const guard = cookieOr(sessions, auth);
  const mount = async (ctx: Context, next: () => Promise<unknown>) =>
    guard(ctx, async () => {
      await board(ctx, next);
      // Its page (rendered to a string): nothing loaded from elsewhere.
      if (typeof ctx.body === 'string' && ctx.response.is('html')) {
        ctx.body = ctx.body.replace(OFFSITE_FONTS, '');
        ctx.set('Content-Security-Policy', BOARD_CSP);
      }
    });
  router.all('/admin/jobs', mount);
  router.all('/admin/jobs/{*rest}', mount);

  return router;
}
