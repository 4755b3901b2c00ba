import { randomUUID, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { rootCertificates, type PeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { jsonBody, validate } from './body.js';

export interface DemoOptions {
  /** Base URL of this server's public API (its listening address, never the request's Host header). */
  apiUrl: () => string;
  /** The producer key the demo backend calls the API with. */
  apiKey: string;
  logger: Logger;
  clock: Clock;
  /**
   * The PEM certificate this node serves (TLS_CERT_FILE), when `apiUrl` is `https://`: the calls
   * trust exactly it. @defaultValue none, plain HTTP
   */
  serverCert?: Buffer | string;
  /** Room every demo user joins. @defaultValue 'lobby' */
  room?: string;
  /** Period of the clock messages, ms. @defaultValue 1000 */
  clockMs?: number;
  /** A user whose page has not said hello for this long loses their clock schedule, ms. @defaultValue 60000 */
  presenceMs?: number;
  /** Largest accepted request body, bytes. @defaultValue 16384 */
  bodyMaxBytes?: number;
}

export interface Demo {
  readonly router: Router;
  /** Stops the presence timer; the clock schedules stay in Redis until their `until` (a page still open renews it). */
  close(): void;
}

const PAGE_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};
const PAGE_DIR = fileURLToPath(new URL('./demo-page/', import.meta.url));
// The page loads nothing from elsewhere; this keeps it so.
const CSP =
  "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/**
 * Narrower than a user id: no dots, so no name can turn `/v1/users/<name>/...`
 * into `..` and reach another route (WHATWG URL resolves `%2e%2e` too).
 */
const demoName = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'use 1 to 32 letters, digits, _ or -');
const nameBody = z.strictObject({ name: demoName });
const sendBody = z
  .strictObject({
    from: demoName,
    to: demoName.optional(),
    room: demoName.optional(),
    text: z.string().trim().min(1).max(2000),
    /** Chosen by the page, so a retried send is enqueued once (it becomes the idempotency key). */
    msgId: z.string().regex(/^[A-Za-z0-9-]{8,64}$/).optional(),
  })
  .refine((b) => (b.to === undefined) !== (b.room === undefined), { message: 'give either `to` or `room`' });

interface ApiAnswer {
  status: number;
  body: unknown;
}

/**
 * The demo chat at `/demo`: a static page, and a small "application backend"
 * under `/demo/api` that does what a real one would: it calls postbox's
 * public REST API over HTTP with the producer key (room membership, stream
 * tokens, enqueue) and hands the page a token. There is no login: anyone who
 * can reach it can act as any user, hence DEMO is off outside development.
 */
export function createDemo(options: DemoOptions): Demo {
  const { apiKey, logger, clock } = options;
  const room = options.room ?? 'lobby';
  const clockMs = options.clockMs ?? 1000;
  const presenceMs = options.presenceMs ?? 60_000;
  const body = jsonBody(options.bodyMaxBytes ?? 16_384);
  const router = new Router({ prefix: '/demo' });
  /** userId → when their page last said hello (ms); these users have a clock schedule. */
  const present = new Map<string, number>();

  const agent = options.serverCert === undefined ? undefined : pinnedAgent(options.serverCert);

  function api(method: string, path: string, payload?: unknown): Promise<ApiAnswer> {
    const url = new URL(options.apiUrl() + path);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          agent,
          signal: AbortSignal.timeout(10_000),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown) });
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      req.on('error', reject);
      req.end(payload === undefined ? undefined : JSON.stringify(payload));
    });
  }

  /** Hands an API error to the page as the API gave it. */
  function fail(ctx: Context, answer: ApiAnswer): void {
    ctx.status = answer.status;
    ctx.body = answer.body;
  }

  const ok = (a: ApiAnswer) => a.status >= 200 && a.status < 300;

  /**
   * The live clock is a recurring message per user (`PUT /v1/users/:userId/schedules/clock`);
   * the page shows the enqueue time carried by each event id. It runs while the page says
   * hello: each hello (and the login) moves the schedule's `until` to a presence window ahead,
   * so a tab that closed without a word stops ticking within that window by itself, even when
   * this server restarted meanwhile and forgot who was there. A `bye` or the sweep below
   * removes the schedule at once.
   */
  async function startClock(user: string): Promise<boolean> {
    present.set(user, clock.now());
    // ttlMs: a tick nobody received in time is dropped, not delivered late to a page that comes back.
    const answer = await api('PUT', `/v1/users/${user}/schedules/clock`, {
      every: clockMs,
      event: 'clock',
      data: { source: 'recurring schedule' },
      ttlMs: 3 * clockMs,
      until: clock.now() + presenceMs,
    });
    if (!ok(answer)) logger.warn({ status: answer.status, body: answer.body, user }, 'demo: clock schedule refused');
    return ok(answer);
  }

  function stopClock(user: string): void {
    present.delete(user);
    api('DELETE', `/v1/users/${user}/schedules/clock`).catch((err: unknown) =>
      logger.debug({ err, user }, 'demo: clock schedule not removed'),
    );
  }

  const timer = clock.setInterval(
    () => {
      const now = clock.now();
      for (const [user, seen] of present) if (now - seen > presenceMs) stopClock(user);
    },
    Math.min(presenceMs, 10_000),
  );
  timer.unref();

  router.get('/', (ctx) => serve(ctx, 'index.html'));
  router.get('/:file', (ctx, next) => {
    const file = ctx.params.file ?? '';
    return Object.hasOwn(PAGE_FILES, file) && file !== 'index.html' ? serve(ctx, file) : next();
  });

  // Joins the room, starts the clock, returns a stream token.
  router.post('/api/login', body, async (ctx) => {
    const { name } = validate(nameBody, ctx.request.body);
    const joined = await api('PUT', `/v1/rooms/${room}/members/${name}`);
    if (!ok(joined)) return fail(ctx, joined);
    const clockStarted = await startClock(name);
    const token = await api('POST', '/v1/tokens', { userId: name });
    if (!ok(token)) return fail(ctx, token);
    ctx.body = { userId: name, ...(token.body as object), rooms: [room], clock: clockStarted };
  });

  // The client's getToken: a fresh stream token.
  router.post('/api/token', body, async (ctx) => {
    const { name } = validate(nameBody, ctx.request.body);
    const token = await api('POST', '/v1/tokens', { userId: name });
    if (!ok(token)) return fail(ctx, token);
    ctx.body = { userId: name, ...(token.body as object) };
  });

  // Sent by the page every few seconds while open, and as a beacon on pagehide with `bye`.
  router.post('/api/presence', body, (ctx) => {
    const { name, bye } = validate(nameBody.extend({ bye: z.boolean().optional() }), ctx.request.body);
    if (bye) stopClock(name);
    else void startClock(name).catch((err: unknown) => logger.debug({ err }, 'demo: clock not renewed'));
    ctx.status = 204;
  });

  router.post('/api/send', body, async (ctx) => {
    const { from, to, room: toRoom, text, msgId = randomUUID() } = validate(sendBody, ctx.request.body);
    const data = { msgId, from, text, sentAt: new Date(clock.now()).toISOString(), ...(to ? { to } : { room: toRoom }) };
    // Web Push for whoever has no open tab ("notify me when closed"); postbox ignores it when push is off.
    const push = { title: to !== undefined ? from : `#${toRoom} · ${from}`, body: clip(text, PUSH_BODY_MAX_BYTES) };
    // The message id is the idempotency key: the page may retry a send whose answer it lost.
    const answer =
      to !== undefined
        ? // To the recipient and a copy to the sender, so both pages show it from their streams.
          await api('POST', '/v1/messages', {
            messages: [...new Set([to, from])].map((user) => ({
              userId: user,
              event: 'chat',
              data,
              key: msgId,
              ...(user === to && to !== from ? { push } : {}),
            })),
          })
        : await api('POST', `/v1/rooms/${toRoom}/messages`, { event: 'chat', data, push, key: msgId });
    if (!ok(answer)) return fail(ctx, answer);
    ctx.status = 202;
    ctx.body = { msgId };
  });

  return {
    router,
    close() {
      clock.clearInterval(timer);
      agent?.destroy();
    },
  };
}

/** A push option is at most 2048 bytes as JSON (src/http/schemas.ts): the body keeps well under it. */
const PUSH_BODY_MAX_BYTES = 1500;

/** `text` cut to at most `maxBytes` of UTF-8 (whole characters), with an ellipsis when cut. */
function clip(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  for (const char of text) {
    if (Buffer.byteLength(out + char) > maxBytes - 3) break;
    out += char;
  }
  return `${out}…`;
}

async function serve(ctx: Context, file: string): Promise<void> {
  ctx.body = await readFile(PAGE_DIR + file);
  ctx.type = PAGE_FILES[file] ?? 'application/octet-stream';
  ctx.set({ 'Cache-Control': 'no-cache', 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' });
}

/**
 * An agent for calls to this node over HTTPS. The node's URL is its listening
 * address (an IP the certificate need not name), so instead of the host name
 * the check is that the server presents exactly our certificate; the chain must
 * still verify, against the public roots or, for a self-signed one, itself.
 */
function pinnedAgent(pem: Buffer | string): Agent {
  const own = new X509Certificate(pem).raw;
  return new Agent({
    keepAlive: true,
    ca: [...rootCertificates, pem.toString()],
    checkServerIdentity: (_host: string, cert: PeerCertificate) =>
      cert.raw.equals(own) ? undefined : new Error('the server did not present the certificate of this node'),
  });
}
