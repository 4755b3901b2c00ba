import type { Middleware } from 'koa';
import { Counter } from 'prom-client';
import { requireAckAuth, requireKey, requireStreamToken } from './auth.js';
import { jsonBody } from './body.js';
import type { AppDeps } from './deps.js';
import { createProducerLimits, type ProducerLimits } from './producer-limits.js';
import { createStorage, type Storage } from './storage.js';
import { createStreamLimits, type StreamLimits } from './stream-limits.js';

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

/** The request guards and limits, built once per app and shared by every router. */
export interface Guards {
  /** Bearer API_KEY, and one token of the API key's rate limit. */
  producer: Middleware;
  /** Bearer API_KEY only: for the enqueue routes, which take their tokens from `limits` by message. */
  producerUnmetered: Middleware;
  /** Bearer ADMIN_KEY. */
  admin: Middleware;
  /** A stream token (`?token=` or Bearer); sets `ctx.state.userId`. */
  stream: Middleware<StreamState>;
  /** A stream token, or a Web Push ack credential scoped to one message (`ctx.state.onlyId`). */
  ack: Middleware<AckState>;
  /** A JSON body of at most BODY_MAX_BYTES, nested at most DATA_MAX_DEPTH (+ its envelope) deep. */
  body: Middleware;
  /** Producer rate limits (per API key, per user), shared by all nodes through Redis. */
  limits: ProducerLimits;
  /** Stream limits of this node (open streams, opens per address). */
  streams: StreamLimits;
  /** Says what a Redis failure means for a request: refused, or outcome unknown. */
  storage: Storage;
}

export function createGuards(deps: Pick<AppDeps, 'config' | 'tokens' | 'redis' | 'metrics' | 'push'>): Guards {
  const { config, tokens, redis } = deps;
  const credentials = deps.push?.credentials;
  const keys = { apiKey: config.API_KEY, adminKey: config.ADMIN_KEY };
  const limited = new Counter({
    name: 'postbox_rate_limited_total',
    help: 'Requests refused with 429 by a rate limit: key, user (producers), node_streams, address_opens (streams)',
    labelNames: ['limit'],
    registers: [deps.metrics.registry],
  });
  for (const limit of ['key', 'user', 'node_streams', 'address_opens']) limited.inc({ limit }, 0);
  const limits = createProducerLimits({ redis, config, limited });
  const producerAuth = requireKey('producer', keys, tokens);
  return {
    producer: async (ctx, next) => producerAuth(ctx, () => limits.perCall(ctx, next)),
    producerUnmetered: producerAuth,
    admin: requireKey('admin', keys, tokens),
    stream: requireStreamToken(keys, tokens),
    ack: requireAckAuth(keys, tokens, credentials),
    body: jsonBody(config.BODY_MAX_BYTES),
    limits,
    streams: createStreamLimits(config, limited),
    storage: createStorage(redis),
  };
}
