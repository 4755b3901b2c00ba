import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Context, Next } from 'koa';
import type { z } from 'zod';
import { AppError } from '../errors.js';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body, set by `jsonBody`. */
    body?: unknown;
  }
}

/** `application/json` or a `+json` type (RFC 6839), with parameters. */
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * The request body as text, at most `limit` bytes (PB_ERR_BODY_TOO_LARGE
 * beyond, the rest read and dropped so the connection stays usable).
 */
function readText(req: IncomingMessage | Http2ServerRequest, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (!over) chunks.push(chunk);
    });
    req.once('end', () => {
      if (over) reject(new AppError('PB_ERR_BODY_TOO_LARGE'));
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', (err: Error) => reject(new AppError('PB_ERR_BAD_JSON', 'the request body could not be read', { cause: err })));
  });
}

/**
 * JSON bodies only, at most `limit` bytes; errors map to the catalogue. Read
 * and parsed here rather than by a body-parser library: this runs on every
 * enqueue and ack, and needs none of the rest (forms, compression).
 */
export function jsonBody(limit: number) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const length = Number(ctx.get('content-length') || 0);
    if (length > limit) throw new AppError('PB_ERR_BODY_TOO_LARGE');
    if (!JSON_TYPE.test(ctx.get('content-type'))) throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE');
    const encoding = ctx.get('content-encoding');
    if (encoding !== '' && encoding.toLowerCase() !== 'identity') {
      throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE', 'request bodies are not accepted compressed');
    }
    const text = await readText(ctx.req, limit);
    try {
      ctx.request.body = text === '' ? '' : (JSON.parse(text) as unknown);
    } catch (err) {
      throw new AppError('PB_ERR_BAD_JSON', undefined, { cause: err });
    }
    return next();
  };
}

/** Parses `ctx.request.body` with the schema or throws PB_ERR_VALIDATION naming each problem. */
export function validate<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issues = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    throw new AppError('PB_ERR_VALIDATION', summary, { details: issues });
  }
  return result.data;
}

/**
 * A message's data as the one line of JSON the stream will carry, or
 * PB_ERR_MESSAGE_TOO_LARGE when it passes `maxBytes`. `where` names the
 * message in a batch (`messages.3`).
 */
export function serializeData(data: unknown, maxBytes: number, where?: string): string {
  const text = JSON.stringify(data);
  const size = Buffer.byteLength(text);
  if (size > maxBytes) {
    const prefix = where === undefined ? '' : `${where}: `;
    throw new AppError('PB_ERR_MESSAGE_TOO_LARGE', `${prefix}data is ${size} bytes as JSON; MESSAGE_MAX_BYTES is ${maxBytes}`);
  }
  return text;
}
