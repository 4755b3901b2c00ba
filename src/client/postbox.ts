/**
 * postbox browser client: one EventSource per client, dedupe by event id,
 * batched acks, reconnection with backoff and fresh tokens.
 *
 * No runtime dependencies and no DOM types in its signatures (it only names
 * the few members it uses), so it also runs in Node or a worker given an
 * EventSource and a fetch.
 */

export type PostboxState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One delivered message. `data` is the parsed JSON, not validated against `T`. */
export interface PostboxMessage<T = unknown> {
  /** The event id, `<ms>-<seq>`; the id to ack. */
  id: string;
  /** The event name, `message` unless the producer set one. */
  event: string;
  data: T;
  /**
   * The service worker showed a notification of this message (a Web Push reached this browser
   * first; see `subscribePush`): render it, but skip your own alert, sound or toast.
   */
  notified?: boolean;
  /** `push`: handed over by the service worker after the user clicked its notification (already acked); absent for the stream's. */
  via?: 'push';
}

export type PostboxHandler<T = unknown> = (msg: PostboxMessage<T>) => void | Promise<void>;

/** `postbox.expired`: messages that expired before they reached any of the user's streams (the newest ids, at most 100). */
export interface PostboxExpired {
  count: number;
  ids: string[];
}

/** `postbox.counts`: the user's messages not yet written to a stream, and those written and not acked. */
export interface PostboxCounts {
  waiting: number;
  inflight: number;
}

/** What went wrong, for {@link PostboxLifecycleEvent} `error`. */
export type PostboxErrorSource = 'handler' | 'data' | 'ack' | 'token';

export type PostboxLifecycleEvent =
  | { type: 'open' }
  /**
   * The client reconnects after `delayMs` (backoff with jitter, or the delay a restarting server
   * asked for); `attempt` counts failures since the last open (0 right after a restart notice).
   */
  | { type: 'reconnecting'; attempt: number; delayMs: number }
  /** `message` is set for `handler` and `data` errors; that message was not acked and will be redelivered. */
  | { type: 'error'; source: PostboxErrorSource; error: unknown; message?: PostboxMessage }
  /**
   * A message of an event no handler is registered for: it is not acked, but held and handed to
   * the first handler `on()` registers for its event; the server is told it was not handled, so
   * another tab with a handler may take it (once per message).
   */
  | { type: 'unhandled'; message: PostboxMessage };

/** Errors the client itself raises; handler errors are passed on unchanged. */
export class PostboxError extends Error {
  constructor(
    readonly code: 'PB_CLIENT_BAD_DATA' | 'PB_CLIENT_ACK_FAILED' | 'PB_CLIENT_ACKS_DROPPED' | 'PB_CLIENT_TOKEN' | 'PB_CLIENT_PUSH',
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'PostboxError';
  }
}

/** The event fields the client reads: EventSource's MessageEvent, or its plain open/error Event. */
export interface EventSourceEventLike {
  readonly type: string;
  readonly data?: unknown;
  readonly lastEventId?: string;
}

/** The part of the WHATWG EventSource the client uses; the browser's `EventSource` fits. */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: EventSourceEventLike) => void): void;
  close(): void;
}

export type EventSourceConstructorLike = new (url: string) => EventSourceLike;

/** The part of `fetch` the client uses; the global `fetch` fits. */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; keepalive?: boolean },
) => Promise<{ ok: boolean; status: number }>;

export interface BackoffOptions {
  /**
   * Ceiling of the first retry's delay, in ms. Small: most drops (a proxy's idle cut, a
   * network switch, a node stopped behind a load balancer) are over by the first retry, and a
   * refused attempt costs one connection. @defaultValue 250
   */
  minMs?: number;
  /**
   * Largest delay, in ms. A page comes back at most this long after a long outage ends; with
   * full jitter, N pages retrying against a server that is down make about 2N/maxMs attempts
   * per second, a few hundred a second for 1000 pages at 10 s. @defaultValue 10000
   */
  maxMs?: number;
  /**
   * After the server announced a restart (`postbox.restart`), retries wait a uniform pick in
   * [0, this) for up to a minute instead of backing off, so the page is back within about this
   * long of the server being up again. @defaultValue 1000
   */
  afterRestartMs?: number;
}

/** How long after a restart notice retries keep to `afterRestartMs` before the usual backoff, ms. */
const RESTART_WINDOW_MS = 60_000;
/** The most a restart notice's `reconnectMs` is obeyed, ms (a malformed or hostile value must not park the page). */
const RESTART_DELAY_MAX_MS = 30_000;

/**
 * Delay before reconnect attempt `attempt` (1-based): exponential with full
 * jitter, a uniform pick in [0, min(maxMs, minMs·2^(attempt-1))), so a
 * thousand tabs cut off by one server restart do not all come back at once.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const minMs = options.minMs ?? 250;
  const maxMs = Math.max(minMs, options.maxMs ?? 10_000);
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * The `exp` of a JWT, in ms since the epoch, read without verifying the
 * signature (the server verifies it); undefined when the token is not a JWT
 * or has no numeric `exp`.
 */
export function decodeTokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    // base64url (RFC 7515 §2) to base64, which atob reads.
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '=');
    const claims: unknown = JSON.parse(atob(base64));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** A set of ids that forgets the oldest once it holds `size`. */
export interface IdMemory {
  has(id: string): boolean;
  /** Adds the id, or makes it the newest if already there. */
  add(id: string): void;
  delete(id: string): void;
  readonly size: number;
}

export function createIdMemory(size: number): IdMemory {
  const limit = Math.max(1, Math.floor(size));
  // A Set iterates in insertion order, so its first value is the oldest.
  const ids = new Set<string>();
  return {
    has: (id) => ids.has(id),
    add(id) {
      ids.delete(id);
      ids.add(id);
      if (ids.size > limit) ids.delete(ids.values().next().value as string);
    },
    delete: (id) => void ids.delete(id),
    get size() {
      return ids.size;
    },
  };
}

export interface AckBatcherOptions {
  /** Posts one batch; rejecting keeps the ids queued for the next try. */
  send: (ids: string[]) => Promise<void>;
  /** Told about failed sends and dropped ids. @defaultValue ignore */
  onError?: (error: unknown) => void;
  /** Longest wait before queued ids are sent, in ms. @defaultValue 100 */
  intervalMs?: number;
  /** Queued ids that trigger a send at once. @defaultValue 100 */
  batchSize?: number;
  /** Most ids in one `send` (the server takes up to 1000 per call). @defaultValue 1000 */
  maxPerSend?: number;
  /** Most ids kept queued; beyond it the oldest are dropped. @defaultValue 10000 */
  maxQueued?: number;
  /** Wait after a failed send before trying again, in ms. @defaultValue 1000 */
  retryMs?: number;
}

export interface AckBatcher {
  add(ids: string | readonly string[]): void;
  /** Sends everything queued; resolves when done or when a send failed (the ids stay queued). Never rejects. */
  flush(): Promise<void>;
  /** Flushes once more, then ignores further ids and stops its timers. */
  close(): Promise<void>;
  readonly queued: number;
}

export function createAckBatcher(options: AckBatcherOptions): AckBatcher {
  const { send, onError = () => {}, intervalMs = 100, batchSize = 100, maxPerSend = 1000 } = options;
  const { maxQueued = 10_000, retryMs = 1000 } = options;
  const queue = new Set<string>(); // insertion order = age; an id acked twice is sent once
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inflight: Promise<void> | undefined;
  let failing = false; // after a failed send, wait for the retry timer instead of sending on every add
  let closed = false;

  function schedule(ms: number): void {
    if (timer !== undefined || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      failing = false;
      void flush();
    }, ms);
  }

  function trim(): void {
    // A dropped ack costs one redelivery, not a message: the redelivered id is
    // still in the client's dedupe memory, so it is acked again, not re-handled.
    const excess = queue.size - maxQueued;
    if (excess <= 0) return;
    const oldest = [...queue].slice(0, excess);
    for (const id of oldest) queue.delete(id);
    onError(new PostboxError('PB_CLIENT_ACKS_DROPPED', `dropped ${excess} unsent acks (queue over ${maxQueued})`));
  }

  async function drain(): Promise<void> {
    try {
      while (queue.size > 0) {
        const batch = [...queue].slice(0, maxPerSend);
        for (const id of batch) queue.delete(id);
        try {
          await send(batch);
        } catch (error) {
          // Back in front, oldest first, to go out with the next batch.
          const rest = [...queue];
          queue.clear();
          for (const id of [...batch, ...rest]) queue.add(id);
          trim();
          onError(error);
          failing = true;
          if (timer !== undefined) clearTimeout(timer);
          timer = undefined;
          schedule(retryMs);
          return;
        }
      }
    } finally {
      // Cleared here, not in a .finally() callback, so an add() that runs
      // between the last send and that callback starts a new drain.
      inflight = undefined;
    }
  }

  function flush(): Promise<void> {
    if (inflight) return inflight;
    if (queue.size === 0) return Promise.resolve(); // drain would finish before `inflight` is set
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    inflight = drain();
    return inflight;
  }

  return {
    add(ids) {
      if (closed) return;
      for (const id of typeof ids === 'string' ? [ids] : ids) queue.add(id);
      trim();
      if (queue.size >= batchSize && !failing) void flush();
      else schedule(failing ? retryMs : intervalMs);
    },
    flush,
    close() {
      closed = true; // no retry timer after this flush
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      return flush();
    },
    get queued() {
      return queue.size;
    },
  };
}

export interface PostboxOptions {
  /** Base URL of the postbox server, e.g. `https://push.example.com`, or `''` for the page's own origin. */
  url: string;
  /** A stream token (from the app's backend, which gets it from `POST /v1/tokens`). @defaultValue none: `getToken` is then required */
  token?: string;
  /**
   * Supplies stream tokens: called for the first one when `token` is absent;
   * before a reconnect that follows a connection that never opened (an
   * EventSource hides the status, so any refusal may be an expired token);
   * whenever the token has less than 30 s left; and when an ack is refused with 401.
   * @defaultValue none: the same token is used until `close()`
   */
  getToken?: () => Promise<string> | string;
  /**
   * Event names to listen for from the start. Not needed: the server names every
   * event before its first message on the stream (`postbox.event`) and the client
   * starts listening for it then, so no message is dropped by EventSource for
   * want of a listener.
   * @defaultValue []
   */
  events?: readonly string[];
  /**
   * Ack each message once all its handlers have returned (and their promises
   * resolved). A message of an event with no handler is not acked: it is held
   * for a handler registered later, and reported (lifecycle `unhandled`). With
   * `false`, call `ack(id)` yourself.
   * @defaultValue true
   */
  autoAck?: boolean;
  /** How many handled event ids to remember, so a redelivered message is not handled twice. @defaultValue 1000 */
  dedupeSize?: number;
  /** Delays of reconnects (the client makes them all itself); reset once a stream opens. @defaultValue `{ minMs: 250, maxMs: 10000, afterRestartMs: 1000 }` */
  backoff?: BackoffOptions;
  /** EventSource constructor, for tests or non-browser use. @defaultValue globalThis.EventSource */
  EventSource?: EventSourceConstructorLike;
  /** fetch, used for acks. @defaultValue globalThis.fetch */
  fetch?: FetchLike;
  /**
   * Ask the server for the notices of stream open (`?notices=1`): `postbox.counts` on every
   * open, and `postbox.expired` when messages expired before they were delivered.
   * @defaultValue true
   */
  notices?: boolean;
  /**
   * `navigator.serviceWorker`, when the page's service worker runs the postbox helper
   * (`/client/postbox-sw.js`): the page then tells it which ids it handled (it shows no
   * notification for them, and closes one it showed), answers its questions, and gets the
   * messages whose notification the user clicked. @defaultValue none
   */
  serviceWorker?: ServiceWorkerContainerLike;
}

/** A MessagePort's one member the client uses. */
export interface MessagePortLike {
  postMessage(message: unknown): void;
}

/** The part of `navigator.serviceWorker` (ServiceWorkerContainer) the client uses. */
export interface ServiceWorkerContainerLike {
  readonly ready: Promise<ServiceWorkerRegistrationLike>;
  addEventListener(type: 'message', listener: (event: { readonly data: unknown; readonly ports: readonly MessagePortLike[] }) => void): void;
  /** Delivers messages the worker sent before the page listened (W3C Service Workers §client message queue). */
  startMessages(): void;
}

/** The part of a ServiceWorkerRegistration the client uses. */
export interface ServiceWorkerRegistrationLike {
  readonly active: { postMessage(message: unknown): void } | null;
  readonly pushManager: {
    getSubscription(): Promise<PushSubscriptionLike | null>;
    subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array<ArrayBuffer> }): Promise<PushSubscriptionLike>;
  };
}

/** The part of a PushSubscription the client uses. */
export interface PushSubscriptionLike {
  readonly endpoint: string;
  readonly options?: { readonly applicationServerKey: ArrayBuffer | null };
  toJSON(): unknown;
  unsubscribe(): Promise<boolean>;
}

/** What the page and the service-worker helper say to each other (postMessage), all typed `postbox.*`. */
export type PostboxWorkerMessage =
  /** page → worker: these ids were handled here; show none of them, close any shown. */
  | { type: 'postbox.handled'; ids: string[] }
  /** worker → page, with a reply port: does this page have that id? Answered `{ type, id, handled }`. */
  | { type: 'postbox.has'; id: string }
  /** worker → page: a notification of this id is showing. */
  | { type: 'postbox.notified'; id: string }
  /** worker → page: the user clicked the notification; the worker acked it and hands the message over. */
  | { type: 'postbox.message'; id: string; event: string; data: unknown };

export interface PostboxClient {
  /**
   * Handles messages of one event name (`message` for unnamed ones; `*` for
   * every event without a handler of its own). Handlers start in arrival
   * order; an async one does not hold back the next message. A throw or
   * rejection leaves the message unacked, tells the server (so the failure
   * counts toward MAX_DELIVERIES) and is reported as a lifecycle `error`; the
   * message comes again. Messages held for want of a handler are handed to
   * the first one registered for their event. Returns the unsubscribe function.
   */
  on<T = unknown>(event: string, handler: PostboxHandler<T>): () => void;
  /** Called on every change of `state`. Returns the unsubscribe function. */
  onState(handler: (state: PostboxState) => void): () => void;
  /** Called on `open`, `reconnecting` (with the delay) and `error` (handler, data, ack, token). Returns the unsubscribe function. */
  onLifecycle(handler: (event: PostboxLifecycleEvent) => void): () => void;
  /**
   * Called with the ids another tab (or anything else) acked (`postbox.acked`): the page can
   * dismiss them. They leave the unacked set and are never handed to a handler afterwards.
   * Returns the unsubscribe function.
   */
  onAcked(handler: (ids: string[]) => void): () => void;
  /** Called when the stream opens with messages that expired before they were delivered (`postbox.expired`). */
  onExpired(handler: (expired: PostboxExpired) => void): () => void;
  /** Called with the user's counts each time the stream opens (`postbox.counts`), e.g. for a badge. */
  onCounts(handler: (counts: PostboxCounts) => void): () => void;
  /** Acks by event id, batched like auto-acks (at most every 100 ms, or at once when 100 wait). */
  ack(id: string | readonly string[]): void;
  /** Sends the waiting acks now. Never rejects: a failed send is reported as an `error` and retried. */
  flushAcks(): Promise<void>;
  readonly state: PostboxState;
  /** The id of the last message received. */
  readonly lastEventId: string | undefined;
  /** Closes the stream, stops the timers and sends the waiting acks (with `keepalive`, so it works in `pagehide`). */
  close(): void;
}

const TOKEN_MARGIN_MS = 30_000;

/** Opens the stream and returns the client; the connection starts asynchronously, so handlers added right after still see every message. */
export function connect(options: PostboxOptions): PostboxClient {
  const globals = globalThis as unknown as { EventSource?: EventSourceConstructorLike; fetch?: FetchLike };
  const EventSourceImpl = options.EventSource ?? globals.EventSource;
  // Bound, because a browser fetch called as a method of another object throws "Illegal invocation".
  const fetchImpl = options.fetch ?? globals.fetch?.bind(globalThis);
  if (!EventSourceImpl || !fetchImpl) throw new TypeError('postbox: no EventSource or fetch here; pass them in the options');
  const EventSourceCtor: EventSourceConstructorLike = EventSourceImpl;
  const doFetch: FetchLike = fetchImpl;
  const { getToken, autoAck = true } = options;
  if (!options.token && !getToken) throw new TypeError('postbox: pass `token` or `getToken`');
  const base = options.url.replace(/\/+$/, '');
  const dedupeSize = options.dedupeSize ?? 1000;

  const handlers = new Map<string, Set<PostboxHandler>>();
  const stateListeners = new Set<(state: PostboxState) => void>();
  const lifecycleListeners = new Set<(event: PostboxLifecycleEvent) => void>();
  const ackedListeners = new Set<(ids: string[]) => void>();
  const expiredListeners = new Set<(expired: PostboxExpired) => void>();
  const countsListeners = new Set<(counts: PostboxCounts) => void>();
  const listening = new Set(['message', ...(options.events ?? [])]);
  const handled = createIdMemory(dedupeSize); // handled without error: never handed to handlers again
  const notified = createIdMemory(dedupeSize); // the service worker showed a notification of these
  const unsettled = createIdMemory(dedupeSize); // received but not acked: failed, running, or awaiting ack()
  const running = new Set<string>();
  const dismissed = createIdMemory(dedupeSize); // acked elsewhere: never handed to a handler, never acked again
  const batcher = createAckBatcher({ send: postAcks, onError: (error) => report('ack', error) });
  // What was not handled goes back to the server too, so it knows why an ack is missing.
  const failedBatcher = createAckBatcher({ send: (ids) => postNacks(ids, 'failed'), onError: (error) => report('ack', error) });
  const unhandledBatcher = createAckBatcher({
    send: (ids) => postNacks(ids, 'unhandled'),
    onError: (error) => report('ack', error),
  });
  /** Messages no handler took, by id, oldest first; bounded like the dedupe memory. */
  const unhandled = new Map<string, PostboxMessage>();
  let token = options.token;
  let refreshing: Promise<string> | undefined;
  let state: PostboxState = 'connecting';
  let lastEventId: string | undefined;
  let source: EventSourceLike | undefined;
  let attempt = 0; // failed connections since the last open
  let restartUntil = 0; // epoch ms: until then, failed reconnects retry within afterRestartMs (the server said it restarts)
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let closing = false;

  function notify<A>(listeners: Set<(arg: A) => void>, arg: A): void {
    for (const listener of [...listeners]) {
      try {
        listener(arg);
      } catch (error) {
        // As EventTarget does: report the listener's exception, go on with the others.
        setTimeout(() => {
          throw error;
        }, 0);
      }
    }
  }

  function setState(next: PostboxState): void {
    if (state === next) return;
    state = next;
    notify(stateListeners, next);
  }

  function report(origin: PostboxErrorSource, error: unknown, message?: PostboxMessage): void {
    const event: PostboxLifecycleEvent = { type: 'error', source: origin, error };
    notify(lifecycleListeners, message ? { ...event, message } : event);
  }

  function expiresSoon(t: string): boolean {
    const exp = decodeTokenExpiry(t);
    return exp !== undefined && exp - Date.now() < TOKEN_MARGIN_MS;
  }

  function refreshToken(get: () => Promise<string> | string): Promise<string> {
    // One getToken call at a time, however many reconnects and ack retries want a token.
    // Promise.resolve().then() defers the call, so `refreshing` is set before .finally() clears it.
    refreshing ??= Promise.resolve()
      .then(get)
      .then((fresh) => {
        if (typeof fresh !== 'string' || fresh === '') throw new PostboxError('PB_CLIENT_TOKEN', 'getToken returned no token');
        token = fresh;
        return fresh;
      })
      .finally(() => {
        refreshing = undefined;
      });
    return refreshing;
  }

  async function currentToken(force: boolean): Promise<string> {
    if (getToken && (force || !token || expiresSoon(token))) return refreshToken(getToken);
    const exp = token === undefined ? undefined : decodeTokenExpiry(token);
    if (exp !== undefined && exp <= Date.now()) {
      report('token', new PostboxError('PB_CLIENT_TOKEN', 'the stream token has expired and there is no getToken option'));
    }
    return token ?? '';
  }

  function streamUrl(t: string): string {
    // announce=1: the server names each event before its first message, so it can be listened for.
    let url = `${base}/v1/stream?token=${encodeURIComponent(t)}&announce=1`;
    // A new EventSource cannot send Last-Event-ID, so the resume point goes in the query.
    // The server acks everything up to it, so send it only when nothing received is unacked;
    // without it the server redelivers what is in flight and the dedupe memory acks it again.
    if (lastEventId && unsettled.size === 0) url += `&lastEventId=${encodeURIComponent(lastEventId)}`;
    if (options.notices ?? true) url += '&notices=1';
    return url;
  }

  async function openStream(refresh: boolean): Promise<void> {
    let streamToken: string;
    try {
      streamToken = await currentToken(refresh);
    } catch (error) {
      if (state === 'closed') return;
      report('token', error);
      scheduleReconnect(true);
      return;
    }
    if (state === 'closed') return;
    const es = new EventSourceCtor(streamUrl(streamToken));
    source = es;
    let opened = false;
    // A message event may be named "open" or "error" too; those carry data, the EventSource's own do not.
    es.addEventListener('open', (event) => {
      if (typeof event.data === 'string' || source !== es) return;
      opened = true;
      attempt = 0;
      restartUntil = 0;
      setState('open');
      notify(lifecycleListeners, { type: 'open' });
    });
    es.addEventListener('error', (event) => {
      if (typeof event.data === 'string' || source !== es) return;
      // Every reconnect is made here; the EventSource never gets to retry by itself. A browser
      // that reconnects sends Last-Event-ID (the last id it saw), and the server acks every
      // message up to it: that would ack a message whose handler threw or is still running, or
      // one awaiting ack() with autoAck false, and none of them would come again. streamUrl()
      // sends the resume point only when nothing received is unacked. Our own reconnects also spread out with jittered backoff (a browser retries
      // after the same `retry:` delay everywhere, so every tab of a restarted server comes back
      // in the same instant) and can fetch a fresh token.
      // An EventSource hides the status of a refusal (401, 429, 5xx), so a connection that never
      // opened asks getToken for a new token; a stream that opened and then ended had a token the
      // server accepted, kept unless it expires soon (currentToken() checks that).
      es.close();
      source = undefined;
      // While a server announced as restarting is away, a refusal is its absence, not the token.
      scheduleReconnect(!opened && Date.now() >= restartUntil);
    });
    // A server shutting down gracefully says so before it ends the stream: come back after the
    // delay it picked (jittered per page, so pages do not all return in one instant), then retry
    // briskly while it restarts. Not a failure: the token stays, the backoff does not grow.
    es.addEventListener('postbox.restart', (event) => {
      if (source !== es || typeof event.data !== 'string') return;
      let reconnectMs = 0;
      try {
        const told = (JSON.parse(event.data) as { reconnectMs?: unknown } | null)?.reconnectMs;
        if (typeof told === 'number' && Number.isFinite(told)) reconnectMs = Math.min(Math.max(0, told), RESTART_DELAY_MAX_MS);
      } catch {
        // no delay given: come back at once
      }
      es.close();
      source = undefined;
      restartUntil = Date.now() + reconnectMs + RESTART_WINDOW_MS;
      scheduleReconnect(false, reconnectMs);
    });
    for (const name of listening) es.addEventListener(name, onFrame);
    // The server names an event before its first message: listen for it from now on. EventSource
    // dispatches each event in its own task, so a listener added here gets the message after it.
    es.addEventListener('postbox.event', (event) => {
      const name = controlData(event);
      if (typeof name === 'string' && /^[A-Za-z0-9._:-]{1,64}$/.test(name)) listen(name);
    });
    es.addEventListener('postbox.acked', onAckedElsewhere);
    es.addEventListener('postbox.expired', (event) => {
      const value = controlData(event) as Partial<PostboxExpired> | undefined;
      if (typeof value?.count !== 'number' || !Array.isArray(value.ids)) return;
      notify(expiredListeners, { count: value.count, ids: value.ids.filter((id): id is string => typeof id === 'string') });
    });
    es.addEventListener('postbox.counts', (event) => {
      const value = controlData(event) as Partial<PostboxCounts> | undefined;
      if (typeof value?.waiting !== 'number' || typeof value.inflight !== 'number') return;
      notify(countsListeners, { waiting: value.waiting, inflight: value.inflight });
    });
  }

  function listen(name: string): void {
    if (listening.has(name)) return;
    listening.add(name);
    source?.addEventListener(name, onFrame);
  }

  /** The JSON of a control event (`postbox.*`, no id); undefined when it does not parse. */
  function controlData(event: EventSourceEventLike): unknown {
    if (typeof event.data !== 'string') return undefined;
    try {
      return JSON.parse(event.data);
    } catch {
      return undefined;
    }
  }

  function onAckedElsewhere(event: EventSourceEventLike): void {
    const value = controlData(event) as { ids?: unknown } | undefined;
    if (!Array.isArray(value?.ids)) return;
    const ids = value.ids.filter((id): id is string => typeof id === 'string' && id !== '');
    if (ids.length === 0) return;
    for (const id of ids) {
      // Done: not ours to ack, nor to hand over if it comes (a frame already on its way).
      dismissed.add(id);
      unsettled.delete(id);
      unhandled.delete(id);
    }
    notify(ackedListeners, ids);
  }

  /**
   * `refresh`: ask getToken for a new token first, because the last attempt may have been refused
   * for its token. `noticeMs`: the server announced a restart and asked for this delay.
   */
  function scheduleReconnect(refresh: boolean, noticeMs?: number): void {
    let delayMs: number;
    if (noticeMs !== undefined) {
      delayMs = noticeMs;
    } else {
      attempt += 1;
      const restartMs = options.backoff?.afterRestartMs ?? 1000;
      delayMs =
        Date.now() < restartUntil
          ? backoffDelay(1, { minMs: restartMs, maxMs: restartMs })
          : backoffDelay(attempt, options.backoff);
    }
    setState('reconnecting');
    notify(lifecycleListeners, { type: 'reconnecting', attempt, delayMs });
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void openStream(refresh);
    }, delayMs);
  }

  function onFrame(event: EventSourceEventLike): void {
    if (typeof event.data !== 'string') return; // the EventSource's own open/error events
    const id = event.lastEventId ?? '';
    if (id) lastEventId = id;
    if (id && dismissed.has(id)) return; // acked elsewhere: already done
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      // Not acked: after MAX_DELIVERIES it lands in the dead letters, where an operator sees it.
      if (id) unsettled.add(id);
      const error = new PostboxError('PB_CLIENT_BAD_DATA', `event ${id} has data that is not JSON`);
      report('data', error, { id, event: event.type, data: event.data });
      return;
    }
    const msg: PostboxMessage = { id, event: event.type, data, ...(id && notified.has(id) ? { notified: true } : {}) };
    if (id && running.has(id)) return; // the first delivery's outcome decides the ack
    if (id && handled.has(id)) {
      // Redelivered because the server has not seen the ack; unless it is still awaiting the app's ack().
      if (!unsettled.has(id)) batcher.add(id);
      return;
    }
    handle(msg, autoAck);
  }

  /**
   * Runs every handler of the message's event (or of `*`); on success the id is handled (and
   * acked when `ackAfter`). With no handler at all the message is neither acked nor dropped:
   * held for a handler to come, and the server is told. A message the service worker handed
   * over (`via: 'push'`) is the same but for the server: the worker acked it, so nothing is
   * acked, nacked or left unsettled for it.
   */
  function handle(msg: PostboxMessage, ackAfter: boolean): void {
    const { id } = msg;
    const open = id !== '' && msg.via !== 'push'; // the server still has it, in flight or waiting
    const own = handlers.get(msg.event);
    const list = [...(own !== undefined && own.size > 0 ? own : (handlers.get('*') ?? []))];
    if (list.length === 0) {
      if (id) {
        if (open) unsettled.add(id);
        if (!unhandled.has(id)) {
          unhandled.set(id, msg);
          if (unhandled.size > dedupeSize) unhandled.delete(unhandled.keys().next().value as string);
          notify(lifecycleListeners, { type: 'unhandled', message: msg });
        }
        if (open) unhandledBatcher.add(id);
      }
      return;
    }
    if (id) {
      unhandled.delete(id);
      running.add(id);
      if (open) unsettled.add(id);
    }
    // Every handler starts now, in order; the ack waits for all of them.
    const results = list.map((handler) => {
      try {
        return handler(msg);
      } catch (error) {
        return Promise.reject(error);
      }
    });
    Promise.all(results)
      .then(
        () => {
          if (!id) return;
          handled.add(id);
          tellWorker({ type: 'postbox.handled', ids: [id] });
          if (ackAfter && open) ack(id);
        },
        (error: unknown) => {
          report('handler', error, msg);
          if (open) failedBatcher.add(id);
        },
      )
      .finally(() => running.delete(id));
  }

  // ---- the service-worker helper (src/client/postbox-sw.ts), when `serviceWorker` is given ----

  // `ready` resolves once a registration whose scope covers this page is active (it may never:
  // a page outside the worker's scope); until then a few messages wait, and the rest are dropped
  // (the worker also asks open pages before it shows anything).
  let registration: ServiceWorkerRegistrationLike | undefined;
  const waiting: PostboxWorkerMessage[] = [];
  options.serviceWorker?.ready
    .then((r) => {
      registration = r;
      for (const m of waiting.splice(0)) r.active?.postMessage(m);
    })
    .catch(() => undefined);

  function tellWorker(message: PostboxWorkerMessage): void {
    if (!options.serviceWorker) return;
    if (registration) registration.active?.postMessage(message);
    else if (waiting.length < 100) waiting.push(message);
  }

  function onWorkerMessage(event: { readonly data: unknown; readonly ports: readonly MessagePortLike[] }): void {
    const m = event.data as Partial<PostboxWorkerMessage> | null;
    if (!m || typeof m !== 'object' || typeof m.type !== 'string' || typeof (m as { id?: unknown }).id !== 'string') return;
    const id = (m as { id: string }).id;
    if (m.type === 'postbox.has') {
      // Received here (handled, running, or awaiting its ack): the worker then shows no notification.
      const has = handled.has(id) || running.has(id) || unsettled.has(id);
      event.ports[0]?.postMessage({ type: 'postbox.has', id, handled: has });
    } else if (m.type === 'postbox.notified') {
      notified.add(id);
    } else if (m.type === 'postbox.message' && state !== 'closed') {
      const { event: name, data } = m as { event?: unknown; data?: unknown };
      if (typeof name !== 'string' || handled.has(id) || running.has(id)) return;
      notified.add(id);
      // The worker acked it (with the push's credential): handed to the handlers as a stream's
      // message is (those of its event, else `*`, else held for one to come), not acked again.
      handle({ id, event: name, data, notified: true, via: 'push' }, false);
    }
  }

  if (options.serviceWorker) {
    options.serviceWorker.addEventListener('message', onWorkerMessage);
    options.serviceWorker.startMessages();
  }

  function ack(ids: string | readonly string[]): void {
    for (const id of typeof ids === 'string' ? [ids] : ids) {
      if (!id) continue;
      unsettled.delete(id);
      batcher.add(id);
    }
  }

  function post(ids: string[], t: string): ReturnType<FetchLike> {
    return doFetch(`${base}/v1/acks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` },
      body: JSON.stringify({ ids }),
      keepalive: closing, // outlives the page when close() runs in pagehide; 1000 ids stay under its 64 KiB cap
    });
  }

  async function postNacks(ids: string[], reason: 'failed' | 'unhandled'): Promise<void> {
    const t = await currentToken(false);
    const res = await doFetch(`${base}/v1/nacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` },
      body: JSON.stringify({ ids, reason }),
      keepalive: closing,
    });
    if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)) return;
    throw new PostboxError('PB_CLIENT_ACK_FAILED', `POST /v1/nacks answered ${res.status}`, res.status);
  }

  async function postAcks(ids: string[]): Promise<void> {
    let res = await post(ids, await currentToken(false));
    if (res.status === 401 && getToken) res = await post(ids, await refreshToken(getToken));
    if (res.ok) return;
    const error = new PostboxError('PB_CLIENT_ACK_FAILED', `POST /v1/acks answered ${res.status}`, res.status);
    if (res.status === 408 || res.status === 429 || res.status >= 500) throw error; // kept queued, retried
    // Any other answer (400, 403, 401 with no getToken) would come again: drop these ids.
    // The server redelivers them, and the dedupe memory acks them again.
    report('ack', error);
  }

  void openStream(false);

  return {
    on<T = unknown>(event: string, handler: PostboxHandler<T>) {
      const h = handler as PostboxHandler; // T is the caller's claim about `data`, not checked
      let set = handlers.get(event);
      if (!set) handlers.set(event, (set = new Set()));
      set.add(h);
      if (event !== '*') listen(event);
      // Messages held for want of a handler go to the first one registered for them.
      for (const msg of [...unhandled.values()]) {
        if (event === '*' || msg.event === event) {
          unhandled.delete(msg.id);
          handle(msg, autoAck);
        }
      }
      return () => void set.delete(h);
    },
    onState(handler) {
      stateListeners.add(handler);
      return () => void stateListeners.delete(handler);
    },
    onLifecycle(handler) {
      lifecycleListeners.add(handler);
      return () => void lifecycleListeners.delete(handler);
    },
    onAcked(handler) {
      ackedListeners.add(handler);
      return () => void ackedListeners.delete(handler);
    },
    onExpired(handler) {
      expiredListeners.add(handler);
      return () => void expiredListeners.delete(handler);
    },
    onCounts(handler) {
      countsListeners.add(handler);
      return () => void countsListeners.delete(handler);
    },
    ack,
    flushAcks: () => batcher.flush(),
    get state() {
      return state;
    },
    get lastEventId() {
      return lastEventId;
    },
    close() {
      if (state === 'closed') return;
      if (reconnectTimer !== undefined) clearTimeout(reconnectTimer);
      source?.close();
      source = undefined;
      setState('closed');
      closing = true;
      void batcher.close();
      void failedBatcher.close();
      void unhandledBatcher.close();
    },
  };
}

// ---- Web Push ------------------------------------------------------------------------------

/** The part of `fetch` the push functions use; the global `fetch` fits. */
export type PushFetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

export interface PushOptions {
  /** Base URL of the postbox server, or `''` for the page's own origin. */
  url: string;
  /** A stream token of the user. @defaultValue none: `getToken` is then required */
  token?: string;
  /** Supplies a stream token (as for `connect`). */
  getToken?: () => Promise<string> | string;
  /** `navigator.serviceWorker`: its ready registration is the one pushes wake (it runs `/client/postbox-sw.js`). */
  serviceWorker: Pick<ServiceWorkerContainerLike, 'ready'>;
  /** @defaultValue globalThis.fetch */
  fetch?: PushFetchLike;
}

export interface PushSubscriptionHandle {
  /** The push service's endpoint of this browser. */
  readonly endpoint: string;
  /** Stops pushes to this browser: removed from postbox, then unsubscribed in the browser. */
  unsubscribe(): Promise<void>;
}

function pushContext(options: PushOptions) {
  const globals = globalThis as unknown as { fetch?: PushFetchLike };
  const doFetch = options.fetch ?? globals.fetch?.bind(globalThis);
  if (!doFetch) throw new TypeError('postbox: no fetch here; pass it in the options');
  if (!options.token && !options.getToken) throw new TypeError('postbox: pass `token` or `getToken`');
  const base = options.url.replace(/\/+$/, '');
  const token = async () => options.token ?? (await options.getToken?.()) ?? '';
  return { doFetch, base, token };
}

/** base64url (RFC 4648 §5) to bytes, for PushManager.subscribe's applicationServerKey. */
function base64urlBytes(text: string): Uint8Array<ArrayBuffer> {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function sameBytes(a: ArrayBuffer | null | undefined, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const view = new Uint8Array(a);
  return view.every((byte, i) => byte === b[i]);
}

/**
 * Subscribes this browser to the user's Web Push, so messages sent with a `push` option reach
 * it while no tab of the user is open. Asks for the notification permission when the browser
 * has not given it (call it from a click: browsers ask only then). The service worker must run
 * the postbox helper (`importScripts('…/client/postbox-sw.js')`); pass the same
 * `serviceWorker` to `connect()` so a message is never shown both in the page and as a
 * notification. Idempotent: an existing subscription with postbox's key is kept and sent again.
 */
export async function subscribePush(options: PushOptions): Promise<PushSubscriptionHandle> {
  const { doFetch, base, token } = pushContext(options);
  const keyRes = await doFetch(`${base}/v1/push/public-key`, { method: 'GET', headers: {} });
  if (!keyRes.ok) throw new PostboxError('PB_CLIENT_PUSH', `GET /v1/push/public-key answered ${keyRes.status} (is Web Push on?)`, keyRes.status);
  const { publicKey } = (await keyRes.json()) as { publicKey: string };
  const key = base64urlBytes(publicKey);
  const registration = await options.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameBytes(subscription.options?.applicationServerKey, key)) {
    // Bound to another key (RFC 8292 §4): its push service would refuse postbox's pushes.
    await subscription.unsubscribe();
    subscription = null;
  }
  // userVisibleOnly: every push shows a notification, which browsers require of web pages.
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const res = await doFetch(`${base}/v1/push/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await token()}` },
    body: JSON.stringify(subscription.toJSON()),
  });
  if (!res.ok) throw new PostboxError('PB_CLIENT_PUSH', `POST /v1/push/subscriptions answered ${res.status}`, res.status);
  const { endpoint } = subscription;
  return { endpoint, unsubscribe: async () => void (await unsubscribePush(options)) };
}

/** Stops Web Push to this browser: removes its subscription from postbox and from the browser. False when there was none. */
export async function unsubscribePush(options: PushOptions): Promise<boolean> {
  const { doFetch, base, token } = pushContext(options);
  const registration = await options.serviceWorker.ready;
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription) return false;
  const res = await doFetch(`${base}/v1/push/subscriptions?endpoint=${encodeURIComponent(subscription.endpoint)}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${await token()}` },
  });
  // 404: postbox had forgotten it already (a push service answered 410). Either way, unsubscribe here.
  if (!res.ok && res.status !== 404) throw new PostboxError('PB_CLIENT_PUSH', `DELETE /v1/push/subscriptions answered ${res.status}`, res.status);
  await subscription.unsubscribe();
  return true;
}
