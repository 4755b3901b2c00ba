import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Context, Next } from 'koa';
import type { z } from 'zod';
import { AppError } from '../errors.js';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body, set by `jsonBody`. */
    body?: unknown;
  }
}

/** A key that could poison a prototype once a parsed body is merged into an object. */
const POISON = /"(?:__proto__|constructor)"\s*:/;

/** A JSON.parse reviver refusing `__proto__` keys and `constructor.prototype` (prototype poisoning). */
function refusePoison(key: string, value: unknown): unknown {
  if (key === '__proto__' || (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype'))) {
    throw new AppError('PB_ERR_VALIDATION', `objects in the body may not have a "${key}" key that reaches a prototype`);
  }
  return value;
}

/** `application/json` or a `+json` type (RFC 6839), with parameters. */
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * How deep a message's `data` may nest (arrays and objects). Real payloads nest a handful of
 * levels; 64 leaves room for any of them while keeping every recursive walk of the value
 * (JSON.stringify here, zod, a page's own code) far from a stack overflow: V8's JSON.stringify
 * throws a RangeError a few thousand levels down, and 20 KB of `[` is 10,000 levels.
 */
export const DATA_MAX_DEPTH = 64;

/** A JSON body may nest this much deeper than the data it carries: `{"messages":[{"data": …}]}`. */
const ENVELOPE_DEPTH = 3;

/**
 * The deepest nesting of arrays and objects in JSON text, in one pass without recursion;
 * brackets inside strings do not count. Stops early once past `stopAt`.
 */
export function jsonDepth(text: string, stopAt = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > max) {
        max = depth;
        if (max > stopAt) return max;
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth -= 1;
    }
  }
  return max;
}

/** `path`: `data`, `messages.3.data`, or '' for the whole body. */
const tooDeep = (path: string) =>
  new AppError(
    'PB_ERR_VALIDATION',
    `${path || 'the request body'} nests deeper than ${DATA_MAX_DEPTH} levels (the limit of a message's data)`,
    { details: [{ path, message: `at most ${DATA_MAX_DEPTH} levels of arrays and objects` }] },
  );

/** Decoders of the Content-Encodings a producer may send (RFC 9110 §8.4.1). */
const DECODERS: Record<string, () => Transform> = {
  gzip: () => createGunzip(),
  'x-gzip': () => createGunzip(),
  deflate: () => createInflate(),
  br: () => createBrotliDecompress(),
};

/**
 * The request body as text, at most `limit` bytes once decoded (a small
 * compressed body that inflates past it, a "bomb", is PB_ERR_BODY_TOO_LARGE
 * too), the rest read and dropped so the connection stays usable.
 */
function readText(req: IncomingMessage | Http2ServerRequest, limit: number, decode?: Transform): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: AppError) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    const source: Readable = decode === undefined ? req : req.pipe(decode);
    source.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (decode !== undefined && !settled) {
        // Stop inflating at once; what is left of the request is read and dropped.
        req.unpipe(decode);
        decode.destroy();
        req.resume();
        fail(new AppError('PB_ERR_BODY_TOO_LARGE', 'the request body is larger than BODY_MAX_BYTES once decoded'));
      }
    });
    source.once('end', () => {
      if (size > limit) return fail(new AppError('PB_ERR_BODY_TOO_LARGE'));
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'));
    });
    source.once('error', (err: Error) =>
      fail(new AppError('PB_ERR_BAD_JSON', 'the request body could not be read or decoded', { cause: err })),
    );
    if (decode !== undefined) req.once('error', (err: Error) => fail(new AppError('PB_ERR_BAD_JSON', undefined, { cause: err })));
  });
}

/**
 * JSON bodies only, at most `limit` bytes; errors map to the catalogue. Read
 * and parsed here rather than by a body-parser library: this runs on every
 * enqueue and ack, and needs none of the rest (forms, charsets).
 */
export function jsonBody(limit: number) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const length = Number(ctx.get('content-length') || 0);
    if (length > limit) throw new AppError('PB_ERR_BODY_TOO_LARGE');
    if (!JSON_TYPE.test(ctx.get('content-type'))) throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE');
    const encoding = ctx.get('content-encoding').trim().toLowerCase();
    let decode: Transform | undefined;
    if (encoding !== '' && encoding !== 'identity') {
      // RFC 9110 §15.5.16: a Content-Encoding the server cannot decode is a 415.
      const make = Object.hasOwn(DECODERS, encoding) ? DECODERS[encoding] : undefined;
      if (make === undefined) throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${encoding} is not supported`);
      decode = make();
    }
    const text = await readText(ctx.req, limit, decode);
    // Parsing deep input is safe (V8's JSON.parse does not recurse); what comes next may not
    // be, so no route ever sees a body nested past the limit.
    if (jsonDepth(text, DATA_MAX_DEPTH + ENVELOPE_DEPTH) > DATA_MAX_DEPTH + ENVELOPE_DEPTH) throw tooDeep('');
    let body: unknown;
    try {
      body = text === '' ? '' : POISON.test(text) ? JSON.parse(text, refusePoison) : JSON.parse(text);
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError('PB_ERR_BAD_JSON', undefined, { cause: err });
    }
    ctx.request.body = body;
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
  const prefix = where === undefined ? '' : `${where}: `;
  const path = where === undefined ? 'data' : `${where}.data`;
  let text: string;
  try {
    // The body guard keeps bodies within DATA_MAX_DEPTH + 3 levels, far from a RangeError here.
    text = JSON.stringify(data);
  } catch (err) {
    if (err instanceof RangeError) throw tooDeep(path);
    throw err;
  }
  const size = Buffer.byteLength(text);
  if (size > maxBytes) {
    throw new AppError('PB_ERR_MESSAGE_TOO_LARGE', `${prefix}data is ${size} bytes as JSON; MESSAGE_MAX_BYTES is ${maxBytes}`);
  }
  if (jsonDepth(text, DATA_MAX_DEPTH) > DATA_MAX_DEPTH) throw tooDeep(path);
  return text;
}
