import { createECDH, randomBytes, type ECDH } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, createServer } from 'node:https';
import { fileURLToPath } from 'node:url';
import ece from 'http_ece';
import { createRecorder, type RecordCondition } from './recorder.js';
import { verifyVapid, type VapidCheck } from './vapid.js';

/**
 * RFC 8030 §8: push services are reached over HTTPS, and web-push only speaks HTTPS.
 * A fixed self-signed certificate for 127.0.0.1 and localhost, valid 2000–2126, test use only.
 */
const caFile = fileURLToPath(new URL('./tls/push-service-cert.pem', import.meta.url));
const cert = readFileSync(caFile, 'utf8');
const key = readFileSync(fileURLToPath(new URL('./tls/push-service-key.pem', import.meta.url)), 'utf8');

/** What `PushSubscription.toJSON()` gives in a browser (Push API §PushSubscription). */
export interface PushSubscriptionJson {
  endpoint: string;
  expirationTime: null;
  keys: { p256dh: string; auth: string };
}

export interface SubscribeOptions {
  /**
   * The VAPID public key (base64url) the browser subscribed with: the subscription is then
   * restricted to it (RFC 8292 §4), and a push signed with another key is answered 403.
   * @defaultValue undefined: any valid VAPID key is accepted
   */
  applicationServerKey?: string;
}

/** One POST /push/:id, as the push service saw and answered it. */
export interface ReceivedPush {
  subscriptionId: string;
  /** The status the service answered with. */
  status: number;
  headers: {
    /** TTL in seconds (RFC 8030 §5.2); undefined when absent or not a non-negative integer. */
    ttl: number | undefined;
    urgency: string | undefined;
    topic: string | undefined;
    contentEncoding: string | undefined;
    authorization: string | undefined;
  };
  /** The plaintext, decrypted with the subscription's keys (RFC 8291); null without a body or when it does not decrypt. */
  payload: string | null;
  /** Why the body did not decrypt, when it did not. */
  decryptError?: string;
  vapid: VapidCheck;
  /** Date.now() on arrival, in ms. */
  receivedAt: number;
}

/** One queued answer; 201 (accepted) needs no plan. */
export interface PlannedAnswer {
  status: 201 | 404 | 410 | 413 | 429 | 500 | 503;
  /** Sent as Retry-After, in seconds. */
  retryAfter?: number;
}

export interface StartPushServiceOptions {
  /**
   * Largest body accepted, in bytes; larger ones are answered 413 (RFC 8030 §7.2 requires at least 4096).
   * @defaultValue 4096
   */
  maxBodyBytes?: number;
}

/** A Web Push service (the push-service side of RFC 8030, with RFC 8291 and RFC 8292) on loopback HTTPS. */
export interface TestPushService {
  /** The origin, `https://127.0.0.1:<port>`: endpoints are `${url}/push/<id>`. */
  readonly url: string;
  /** The PEM certificate to trust, for an in-process `https.Agent({ ca })`. */
  readonly ca: string;
  /** Path of that certificate, for NODE_EXTRA_CA_CERTS of a spawned server. */
  readonly caFile: string;
  /** An https.Agent trusting the service, for web-push's `agent` option; destroyed by close(). */
  readonly agent: Agent;
  /** A new subscription, as a browser would hand it to the application; the service keeps its private keys. */
  subscribe(options?: SubscribeOptions): PushSubscriptionJson;
  /** The subscription id of an endpoint (the last path segment). */
  idOf(subscription: PushSubscriptionJson | string): string;
  /** Every request to /push/:id, in arrival order, whatever it was answered. */
  readonly received: readonly ReceivedPush[];
  /** Resolves with `received` once it has `count` entries (or `predicate` holds); rejects after timeoutMs (default 10 000). */
  waitFor(countOrPredicate: RecordCondition<ReceivedPush>, timeoutMs?: number): Promise<readonly ReceivedPush[]>;
  /**
   * Queues answers for the next valid pushes to one subscription (id, endpoint or subscription),
   * or to any with '*'; a subscription's own queue is used first, then '*', then 201.
   */
  respondWith(subscription: string | PushSubscriptionJson, plan: PlannedAnswer[]): void;
  close(): Promise<void>;
}

interface Subscription {
  ecdh: ECDH;
  auth: Buffer;
  applicationServerKey: string | undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? undefined : Buffer.concat(chunks);
}

export async function startPushService(options: StartPushServiceOptions = {}): Promise<TestPushService> {
  const maxBodyBytes = options.maxBodyBytes ?? 4096;
  const subscriptions = new Map<string, Subscription>();
  const plans = new Map<string, PlannedAnswer[]>();
  const received = createRecorder<ReceivedPush>('push service');
  let origin = '';

  function idOf(subscription: PushSubscriptionJson | string): string {
    const endpoint = typeof subscription === 'string' ? subscription : subscription.endpoint;
    return endpoint.includes('/') ? new URL(endpoint).pathname.split('/').pop()! : endpoint;
  }

  function nextAnswer(id: string): PlannedAnswer {
    return plans.get(id)?.shift() ?? plans.get('*')?.shift() ?? { status: 201 };
  }

  async function handlePush(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const push: ReceivedPush = {
      subscriptionId: id,
      status: 0,
      headers: {
        ttl: undefined,
        urgency: header(req, 'urgency'),
        topic: header(req, 'topic'),
        contentEncoding: header(req, 'content-encoding'),
        authorization: header(req, 'authorization'),
      },
      payload: null,
      vapid: { present: false, valid: false },
      receivedAt: Date.now(),
    };
    const rawTtl = header(req, 'ttl');
    if (rawTtl !== undefined && /^\d+$/.test(rawTtl.trim())) push.headers.ttl = Number(rawTtl);
    const answer = (status: number, extra: Record<string, string> = {}, text = ''): void => {
      push.status = status;
      received.add(push);
      res.writeHead(status, { 'content-type': 'text/plain', ...extra }).end(text);
    };

    const body = await readBody(req, maxBodyBytes);
    const subscription = subscriptions.get(id);
    if (!subscription) return answer(404, {}, 'no such subscription');
    push.vapid = await verifyVapid(push.headers.authorization, {
      audience: origin,
      applicationServerKey: subscription.applicationServerKey,
    });
    // RFC 8292 §4.2: 401 when the vapid authentication is absent, 403 when it is invalid.
    if (!push.vapid.present) return answer(401, { 'www-authenticate': 'vapid' }, push.vapid.reason);
    if (!push.vapid.valid) return answer(403, {}, push.vapid.reason);
    // RFC 8030 §5.2: a request without TTL is answered 400.
    if (push.headers.ttl === undefined) return answer(400, {}, 'TTL header missing or not delta-seconds');
    if (!body) return answer(413, {}, `body over ${maxBodyBytes} bytes`);
    if (body.length > 0) {
      // RFC 8291 §4: Web Push payloads use the aes128gcm content coding (RFC 8188).
      if (push.headers.contentEncoding?.toLowerCase() !== 'aes128gcm') {
        return answer(400, {}, 'Content-Encoding must be aes128gcm');
      }
      try {
        const plain = ece.decrypt(body, { version: 'aes128gcm', privateKey: subscription.ecdh, authSecret: subscription.auth });
        push.payload = plain.toString('utf8');
      } catch (err) {
        push.decryptError = (err as Error).message;
        return answer(400, {}, 'payload does not decrypt with the subscription keys');
      }
    }
    const planned = nextAnswer(id);
    const extra: Record<string, string> = planned.retryAfter === undefined ? {} : { 'retry-after': String(planned.retryAfter) };
    // RFC 8030 §5: 201 Created, with the push message resource in Location.
    if (planned.status === 201) extra.location = `${origin}/message/${randomBytes(8).toString('hex')}`;
    answer(planned.status, extra);
  }

  const server = createServer({ key, cert }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname;
    const match = /^\/push\/([A-Za-z0-9_-]+)$/.exec(path);
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    handlePush(req, res, match[1]!).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  const agent = new Agent({ ca: cert });

  return {
    url: origin,
    ca: cert,
    caFile,
    agent,
    received: received.items,
    idOf,
    subscribe(subscribeOptions = {}) {
      const id = randomBytes(12).toString('base64url');
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      const auth = randomBytes(16);
      subscriptions.set(id, { ecdh, auth, applicationServerKey: subscribeOptions.applicationServerKey });
      return {
        endpoint: `${origin}/push/${id}`,
        expirationTime: null,
        // RFC 8291 §3: p256dh is the uncompressed P-256 public key, auth a 16-byte secret, both base64url.
        keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') },
      };
    },
    respondWith(subscription, plan) {
      const id = subscription === '*' ? '*' : idOf(subscription);
      plans.set(id, [...(plans.get(id) ?? []), ...plan]);
    },
    waitFor: (countOrPredicate, timeoutMs = 10_000) => received.waitFor(countOrPredicate, timeoutMs),
    async close() {
      received.cancel('closed');
      agent.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
