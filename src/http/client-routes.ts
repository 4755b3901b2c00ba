import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import { AppError } from '../errors.js';
import type { ClientBuild } from './client-build.js';

export interface ClientRoutesOptions {
  /** Directory holding the built `postbox.js` and `postbox.d.ts`. @defaultValue `build.dir`, else `dist/client` of the repository */
  dir?: string;
  /** Builds the client when it is missing or older than its source; each request waits for it. @defaultValue none: serve what is there */
  build?: ClientBuild;
  /** `max-age` of the `Cache-Control` header, in seconds. @defaultValue 300 */
  maxAgeSeconds?: number;
}

/** The files served, with their content types. */
const FILES: Record<string, string> = {
  'postbox.js': 'text/javascript; charset=utf-8',
  'postbox.d.ts': 'text/plain; charset=utf-8',
  // The service-worker helper of Web Push (src/client/postbox-sw.ts), a classic script for importScripts().
  'postbox-sw.js': 'text/javascript; charset=utf-8',
};

interface Cached {
  mtimeMs: number;
  size: number;
  body: Buffer;
  etag: string;
}

/**
 * Serves the browser client built by `tsc -p tsconfig.client.json` (`build`
 * runs it when the source is newer, `npm test`'s pretest and `npm run build`
 * too), so a page can
 * `import { connect } from 'https://push.example.com/client/postbox.js'`.
 * Read from disk and kept while its mtime does not change, so a rebuild shows
 * without a restart; a missing build is a 503 saying how to build it.
 */
export function clientRoutes(options: ClientRoutesOptions = {}): Router {
  const { build } = options;
  const dir = options.dir ?? build?.dir ?? fileURLToPath(new URL('../../dist/client/', import.meta.url));
  const maxAge = options.maxAgeSeconds ?? 300;
  const cache = new Map<string, Cached>();
  const router = new Router();

  async function load(name: string): Promise<Cached> {
    const path = join(dir, name);
    let info;
    try {
      info = await stat(path);
    } catch (err) {
      throw new AppError('PB_ERR_CLIENT_NOT_BUILT', undefined, { cause: err });
    }
    const hit = cache.get(name);
    if (hit && hit.mtimeMs === info.mtimeMs && hit.size === info.size) return hit;
    const body = await readFile(path);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    const entry = { mtimeMs: info.mtimeMs, size: info.size, body, etag };
    cache.set(name, entry);
    return entry;
  }

  router.get('/client/:file', async (ctx, next) => {
    const name = ctx.params.file ?? '';
    const type = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (type === undefined) return next(); // the error middleware answers 404
    await build?.ready();
    const file = await load(name);
    ctx.set({
      'Cache-Control': `public, max-age=${maxAge}`,
      // A module script from another origin is fetched in CORS mode (WHATWG HTML §8.1.4.2):
      // without this header a page elsewhere could not import the client.
      'Access-Control-Allow-Origin': '*',
      'X-Content-Type-Options': 'nosniff',
    });
    // The helper may serve as a page's worker with a scope above /client/ (W3C Service Workers
    // §Service-Worker-Allowed): `register('/client/postbox-sw.js', { scope: '/' })`, so that
    // `navigator.serviceWorker.ready` resolves on the page.
    if (name === 'postbox-sw.js') ctx.set('Service-Worker-Allowed', '/');
    ctx.type = type;
    ctx.etag = file.etag;
    ctx.lastModified = new Date(file.mtimeMs);
    ctx.status = 200;
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.body = file.body;
  });

  return router;
}
