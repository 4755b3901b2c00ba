import type { Middleware } from 'koa';
import type { Config } from '../config.js';
import { requireAckAuth, requireKey, requireStreamToken } from './auth.js';
import { jsonBody } from './body.js';
import type { PushCredentials } from './push-credentials.js';
import type { Tokens } from './tokens.js';

/** What a route behind `stream` finds in `ctx.state`. */
export interface StreamState {
  /** The user of the stream token; no route takes a user from anywhere else. */
  userId: string;
}

/** What `POST /v1/acks` finds in `ctx.state`. */
export interface AckState extends StreamState {
  /** Set when the caller used a push's ack credential: the one id it may ack. */
  onlyId?: string;
}

/** The request guards, built once per app and shared by every router. */
export interface Guards {
  /** Bearer API_KEY. */
  producer: Middleware;
  /** Bearer ADMIN_KEY. */
  admin: Middleware;
  /** A stream token (`?token=` or Bearer); sets `ctx.state.userId`. */
  stream: Middleware<StreamState>;
  /** A stream token, or a Web Push ack credential scoped to one message (`ctx.state.onlyId`). */
  ack: Middleware<AckState>;
  /** A JSON body of at most BODY_MAX_BYTES. */
  body: Middleware;
}

export function createGuards(config: Config, tokens: Tokens, credentials?: PushCredentials): Guards {
  const keys = { apiKey: config.API_KEY, adminKey: config.ADMIN_KEY };
  return {
    producer: requireKey('producer', keys, tokens),
    admin: requireKey('admin', keys, tokens),
    stream: requireStreamToken(keys, tokens),
    ack: requireAckAuth(keys, tokens, credentials),
    body: jsonBody(config.BODY_MAX_BYTES),
  };
}
