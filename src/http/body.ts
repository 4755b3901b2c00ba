import { bodyParser } from '@koa/bodyparser';
import type { Context, Next } from 'koa';
import type { z } from 'zod';
import { AppError } from '../errors.js';

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

/** JSON bodies only, at most `limit` bytes; errors map to the catalogue. */
export function jsonBody(limit: number) {
  const parse = bodyParser({
    enableTypes: ['json'],
    jsonLimit: limit,
    jsonStrict: false,
    onError: (err: Error & { status?: number; type?: string }) => {
      if (err.status === 413) throw new AppError('PB_ERR_BODY_TOO_LARGE', undefined, { cause: err });
      // RFC 9110 §15.5.16: a Content-Encoding the server cannot decode is a 415 too.
      if (err.status === 415) throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE', err.message, { cause: err });
      // @hapi/bourne (under co-body) refuses `__proto__` keys: prototype poisoning.
      if (/forbidden prototype property/.test(err.message)) {
        throw new AppError('PB_ERR_VALIDATION', 'objects in the body may not have a "__proto__" key', { cause: err });
      }
      throw new AppError('PB_ERR_BAD_JSON', undefined, { cause: err });
    },
  });
  return async (ctx: Context, next: Next): Promise<void> => {
    const length = Number(ctx.get('content-length') || 0);
    if (length > limit) throw new AppError('PB_ERR_BODY_TOO_LARGE');
    if (!ctx.is('application/json')) {
      throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE');
    }
    return parse(ctx, async () => {
      // Parsing deep input is safe (V8's JSON.parse and bourne's scan do not recurse); what
      // comes next may not be, so no route ever sees a body nested past the limit.
      const raw: unknown = (ctx.request as { rawBody?: unknown }).rawBody;
      if (typeof raw === 'string' && jsonDepth(raw, DATA_MAX_DEPTH + ENVELOPE_DEPTH) > DATA_MAX_DEPTH + ENVELOPE_DEPTH) {
        throw tooDeep('');
      }
      return next();
    });
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
