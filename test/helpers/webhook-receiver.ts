import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { createRecorder, type RecordCondition } from './recorder.js';

/** Largest body read, in bytes; larger ones are answered 413. */
const MAX_BODY_BYTES = 1024 * 1024;

/** One request to the receiver, as it saw it; `status` is set once it has been answered. */
export interface WebhookDelivery {
  /** The `webhook-id` header (Standard Webhooks: the message id, the same on every retry). */
  id: string | undefined;
  /** The `webhook-timestamp` header, in seconds since the epoch. */
  timestamp: number | undefined;
  /** The body parsed as JSON, or the raw text when it is not JSON. */
  body: unknown;
  rawBody: string;
  /** Whether `new Webhook(secret).verify(rawBody, headers)` accepted it (signature and 5-minute timestamp tolerance). */
  valid: boolean;
  /** The verifier's message when invalid. */
  error?: string;
  path: string;
  headers: Record<string, string>;
  /** Date.now() on arrival, in ms. */
  receivedAt: number;
  /** The status answered; undefined while held by hang(), or when the connection closed first. */
  status?: number;
  /** True when the connection closed before an answer: the client gave up, or stop() dropped it. */
  closedBeforeAnswer?: true;
}

/** A status to answer with, or one with a Retry-After in seconds. */
export type WebhookAnswer = number | { status: number; retryAfter?: number };

export interface StartWebhookReceiverOptions {
  /** The endpoint's signing secret, `whsec_<base64>` as Standard Webhooks gives it (or bare base64). */
  secret: string;
}

/** A webhook endpoint on loopback HTTP that checks Standard Webhooks signatures and misbehaves on demand. */
export interface TestWebhookReceiver {
  /** `http://127.0.0.1:<port>`; any path is accepted. The port stays the same across stop() and start(). */
  readonly url: string;
  readonly port: number;
  readonly secret: string;
  /** Every POST, in arrival order. */
  readonly received: readonly WebhookDelivery[];
  /** Queues statuses for the next validly signed deliveries, then 200 again. Invalid ones always get 400. */
  respondWith(plan: WebhookAnswer[]): void;
  /** From now on, holds every request unanswered (recorded on arrival) until release(). */
  hang(): void;
  /** Stops holding, and answers the held requests in arrival order as they would have been answered. */
  release(): void;
  /** Goes down: stops listening and drops every connection, held ones included (clients see a reset or refusal). */
  stop(): Promise<void>;
  /** Comes back up on the same port. */
  start(): Promise<void>;
  /** Resolves with `received` once it has `count` entries (or `predicate` holds); rejects after timeoutMs (default 10 000). */
  waitFor(countOrPredicate: RecordCondition<WebhookDelivery>, timeoutMs?: number): Promise<readonly WebhookDelivery[]>;
  close(): Promise<void>;
}

interface Held {
  delivery: WebhookDelivery;
  res: ServerResponse;
}

function flatHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  }
  return size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks).toString('utf8');
}

export async function startWebhookReceiver(options: StartWebhookReceiverOptions): Promise<TestWebhookReceiver> {
  const verifier = new Webhook(options.secret);
  const received = createRecorder<WebhookDelivery>('webhook receiver');
  const plan: WebhookAnswer[] = [];
  const held: Held[] = [];
  let hanging = false;
  let port = 0;

  function answer({ delivery, res }: Held): void {
    // The client gave up (or stop() dropped it): nothing to answer, no plan entry spent.
    if (res.writableEnded || res.destroyed || !res.socket || res.socket.destroyed) return;
    const next: WebhookAnswer = delivery.valid ? (plan.shift() ?? 200) : 400;
    const { status, retryAfter } = typeof next === 'number' ? { status: next, retryAfter: undefined } : next;
    delivery.status = status;
    received.changed();
    const headers: Record<string, string> = { 'content-type': 'text/plain' };
    if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
    res.writeHead(status, headers).end(delivery.valid ? '' : `invalid signature: ${delivery.error}`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    const rawBody = await readBody(req);
    if (rawBody === undefined) {
      res.writeHead(413).end();
      return;
    }
    const headers = flatHeaders(req);
    const stamp = Number.parseInt(headers['webhook-timestamp'] ?? '', 10);
    let body: unknown = rawBody;
    try {
      body = JSON.parse(rawBody);
    } catch {
      // Not JSON: keep the text.
    }
    const delivery: WebhookDelivery = {
      id: headers['webhook-id'],
      timestamp: Number.isNaN(stamp) ? undefined : stamp,
      body,
      rawBody,
      valid: false,
      path: new URL(req.url ?? '/', 'http://127.0.0.1').pathname,
      headers,
      receivedAt: Date.now(),
    };
    try {
      // The library's own check: v1 HMAC-SHA256 over `${id}.${timestamp}.${body}`, timestamp within 5 minutes.
      verifier.verify(rawBody, headers);
      delivery.valid = true;
    } catch (err) {
      delivery.error = (err as Error).message;
    }
    res.once('close', () => {
      if (res.writableEnded) return;
      delivery.closedBeforeAnswer = true;
      received.changed();
    });
    received.add(delivery);
    if (hanging) held.push({ delivery, res });
    else answer({ delivery, res });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });

  async function start(): Promise<void> {
    if (server.listening) return;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`webhook receiver cannot listen on 127.0.0.1:${port}: ${err.message}`));
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => {
        server.removeListener('error', onError);
        resolve();
      });
    });
    port = (server.address() as { port: number }).port;
  }

  async function stop(): Promise<void> {
    held.splice(0);
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  await start();
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    port,
    secret: options.secret,
    received: received.items,
    respondWith(statuses) {
      plan.push(...statuses);
    },
    hang() {
      hanging = true;
    },
    release() {
      hanging = false;
      for (const h of held.splice(0)) answer(h);
    },
    stop,
    start,
    waitFor: (countOrPredicate, timeoutMs = 10_000) => received.waitFor(countOrPredicate, timeoutMs),
    async close() {
      received.cancel('closed');
      await stop();
    },
  };
}
