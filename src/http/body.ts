import { bodyParser } from '@koa/bodyparser';
import type { Context, Next } from 'koa';
import type { z } from 'zod';
import { AppError } from '../errors.js';

/** JSON bodies only, at most `limit` bytes; errors map to the catalogue. */
export function jsonBody(limit: number) {
  const parse = bodyParser({
    enableTypes: ['json'],
    jsonLimit: limit,
    jsonStrict: false,
    onError: (err: Error & { status?: number; type?: string }) => {
      if (err.status === 413) throw new AppError('PB_ERR_BODY_TOO_LARGE', undefined, { cause: err });
      throw new AppError('PB_ERR_BAD_JSON', undefined, { cause: err });
    },
  });
  return async (ctx: Context, next: Next): Promise<void> => {
    const length = Number(ctx.get('content-length') || 0);
    if (length > limit) throw new AppError('PB_ERR_BODY_TOO_LARGE');
    if (!ctx.is('application/json')) {
      throw new AppError('PB_ERR_UNSUPPORTED_MEDIA_TYPE');
    }
    return parse(ctx, next);
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
