import Router from '@koa/router';
import { AppError } from '../errors.js';
import type { NewMessage } from '../queue/mailbox.js';
import { requireKey } from './auth.js';
import { jsonBody, validate } from './body.js';
import type { AppDeps } from './deps.js';
import { batchBody, enqueueBody, tokenBody, userId as userIdSchema, type EnqueueBody } from './schemas.js';

/** Producer routes: enqueue one or many messages, issue stream tokens. */
export function producerRoutes(deps: AppDeps): Router {
  const { config, mailbox, metrics, tokens, hub, drain } = deps;
  const router = new Router();
  const auth = requireKey('producer', { apiKey: config.API_KEY, adminKey: config.ADMIN_KEY }, tokens);
  const body = jsonBody(config.BODY_MAX_BYTES);

  function toMessage(userId: string, m: EnqueueBody, index?: number): NewMessage {
    const data = JSON.stringify(m.data);
    const size = Buffer.byteLength(data);
    if (size > config.MESSAGE_MAX_BYTES) {
      const where = index === undefined ? '' : `messages.${index}: `;
      throw new AppError(
        'PB_ERR_MESSAGE_TOO_LARGE',
        `${where}data is ${size} bytes as JSON; MESSAGE_MAX_BYTES is ${config.MESSAGE_MAX_BYTES}`,
      );
    }
    return { userId, event: m.event, data, key: m.key, ttlMs: m.ttlMs };
  }

  /** Local streams drain at once; other nodes hear the script's PUBLISH. */
  function wakeLocal(userId: string): void {
    if (hub.isConnected(userId)) drain.wake(userId);
  }

  router.post('/v1/users/:userId/messages', auth, body, async (ctx) => {
    const userId = validate(userIdSchema, ctx.params.userId);
    const message = toMessage(userId, validate(enqueueBody, ctx.request.body));
    const result = await mailbox.enqueue(message);
    if (result.created) {
      metrics.enqueued.inc();
      wakeLocal(userId);
    }
    ctx.status = result.created ? 201 : 200;
    ctx.body = { id: result.id, userId, enqueuedAt: new Date(result.enqueuedAt).toISOString() };
  });

  router.post('/v1/messages', auth, body, async (ctx) => {
    const batch = validate(batchBody, ctx.request.body);
    const messages = batch.messages.map((m, i) => toMessage(m.userId, m, i));
    // Check every queue first so a batch that would overflow one changes nothing.
    const lengths = await mailbox.lengths(messages.map((m) => m.userId));
    const incoming = new Map<string, number>();
    for (const m of messages) incoming.set(m.userId, (incoming.get(m.userId) ?? 0) + 1);
    for (const [userId, n] of incoming) {
      const length = lengths.get(userId) ?? 0;
      if (length + n > config.QUEUE_MAX_LENGTH) {
        throw new AppError(
          'PB_ERR_QUEUE_FULL',
          `the queue of user ${userId} holds ${length} messages; ${n} more would pass QUEUE_MAX_LENGTH`,
          { headers: { 'Retry-After': String(retryAfterSeconds(config.ACK_TIMEOUT_MS)) }, details: { userId } },
        );
      }
    }
    const results = await mailbox.enqueueMany(messages);
    const errors: Array<{ index: number; userId: string; code: string; message: string }> = [];
    const ids = results.map((r, index) => {
      if (r instanceof AppError) {
        // Only a concurrent producer filling the queue between the check and the write lands here.
        errors.push({ index, userId: messages[index]?.userId ?? '', code: r.code, message: r.message });
        return null;
      }
      if (r.created) {
        metrics.enqueued.inc();
        wakeLocal(r.userId);
      }
      return r.id;
    });
    ctx.status = 201;
    ctx.body = errors.length > 0 ? { ids, errors } : { ids };
  });

  router.post('/v1/tokens', auth, body, async (ctx) => {
    const { userId, ttlSeconds } = validate(tokenBody, ctx.request.body);
    ctx.status = 201;
    ctx.body = await tokens.issue(userId, ttlSeconds ?? config.TOKEN_TTL_SECONDS);
  });

  return router;
}

/** How long a producer should wait when a queue is full: about one ack timeout, at least a second. */
export function retryAfterSeconds(ackTimeoutMs: number): number {
  return Math.max(1, Math.ceil(ackTimeoutMs / 1000));
}
