/**
 * postbox service-worker helper: shows the Web Push notifications of postbox messages, acks a
 * message when its notification is clicked, focuses or opens the page, and keeps one message
 * from being shown twice across the page's stream and push.
 *
 * A classic script (no `import`/`export`), for both ways of running it:
 * - postbox on the page's own origin: register it as the worker itself,
 *   `navigator.serviceWorker.register('/client/postbox-sw.js?open=/inbox')`;
 * - your own worker: `importScripts('https://push.example.com/client/postbox-sw.js')`, then
 *   `postboxServiceWorker.install({ url: 'https://push.example.com', open: '/inbox' })`.
 *
 * One message, one id, one display:
 * - a push for an id a page of the origin reports as received (the client library, given
 *   `serviceWorker`, answers the worker's `postbox.has` question and sends `postbox.handled`)
 *   shows nothing;
 * - when a page handles an id over its stream, a notification of it still showing is closed;
 * - a click acks the message with the push's credential, when the push carried the whole
 *   message (its data fitted), and hands it to the page it focuses or opens
 *   (`postbox.message`); otherwise the page's stream delivers it, and the page knows it was
 *   notified (`msg.notified`).
 */

interface PostboxSwOptions {
  /** Base URL of postbox, where acks go. @defaultValue the worker's own origin */
  url?: string;
  /** The page a click focuses (any open page under it) or opens. @defaultValue '/' */
  open?: string;
  /**
   * When to ack a message whose push carried it whole: `click` (the user opened the
   * notification), `shown` (as soon as it shows), `never` (leave it to the page's stream).
   * @defaultValue 'click'
   */
  ack?: 'click' | 'shown' | 'never';
  /** Icon of the notifications (a URL). @defaultValue none */
  icon?: string;
  /** How long to wait for each open page to say whether it has a message, ms. @defaultValue 500 */
  askTimeoutMs?: number;
}

/** The plaintext of a postbox push (src/workers/push-worker.ts, PushPayload). */
interface PostboxSwPayload {
  postbox: 1;
  id: string;
  event: string;
  title: string;
  body?: string;
  topic?: string;
  /** The ack credential: acks this one message. */
  ack: string;
  /** Present when the whole message fitted the push. */
  data?: unknown;
}

interface PostboxSwNotification {
  readonly data: unknown;
  close(): void;
}

interface PostboxSwClient {
  readonly url: string;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  focus?(): Promise<PostboxSwClient>;
}

interface PostboxSwExtendableEvent {
  waitUntil(promise: Promise<unknown>): void;
}

/** The members of ServiceWorkerGlobalScope the helper uses (no WebWorker lib: the client builds with DOM). */
interface PostboxSwScope {
  readonly location: { readonly origin: string; readonly pathname: string; readonly search: string };
  readonly registration: {
    showNotification(title: string, options: Record<string, unknown>): Promise<void>;
    getNotifications(): Promise<PostboxSwNotification[]>;
  };
  readonly clients: {
    matchAll(options: { type: 'window'; includeUncontrolled: boolean }): Promise<PostboxSwClient[]>;
    openWindow(url: string): Promise<PostboxSwClient | null>;
  };
  addEventListener(type: string, listener: (event: never) => void): void;
  fetch(url: string, init: { method: string; headers: Record<string, string>; body: string }): Promise<{ ok: boolean }>;
  postboxServiceWorker?: PostboxServiceWorker;
}

interface PostboxServiceWorker {
  /** Adds the push, notificationclick and message listeners (once). */
  install(options?: PostboxSwOptions): void;
  /** What the push listener does with a payload: shows it, unless a page has the id. */
  showPush(payload: unknown): Promise<'shown' | 'handled' | 'not-postbox'>;
  /** What the notificationclick listener does: acks (when it may), focuses or opens the page, hands the message over. */
  openNotification(notification: PostboxSwNotification): Promise<{ acked: boolean }>;
}

(() => {
  const scope = globalThis as unknown as PostboxSwScope;
  let options: PostboxSwOptions = {};
  let installed = false;
  /** Ids pages reported handled; the worker may be stopped and forget them, so pages are also asked. */
  const handled = new Set<string>();
  const HANDLED_MAX = 1000;

  function remember(id: string): void {
    handled.delete(id);
    handled.add(id);
    if (handled.size > HANDLED_MAX) handled.delete(handled.values().next().value as string);
  }

  function parse(payload: unknown): PostboxSwPayload | undefined {
    const p = (typeof payload === 'string' ? safeJson(payload) : payload) as Partial<PostboxSwPayload> | undefined;
    if (!p || p.postbox !== 1 || typeof p.id !== 'string' || typeof p.title !== 'string' || typeof p.ack !== 'string') return undefined;
    return p as PostboxSwPayload;
  }

  function safeJson(text: string): unknown {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  const base = () => (options.url ?? scope.location.origin).replace(/\/+$/, '');
  const windows = () => scope.clients.matchAll({ type: 'window', includeUncontrolled: true });

  /** Asks one page whether it has the id; a page without the client library never answers: false after the timeout. */
  function ask(client: PostboxSwClient, id: string): Promise<boolean> {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      const timer = setTimeout(() => resolve(false), options.askTimeoutMs ?? 500);
      channel.port1.onmessage = (event) => {
        clearTimeout(timer);
        resolve((event.data as { handled?: unknown } | null)?.handled === true);
      };
      client.postMessage({ type: 'postbox.has', id }, [channel.port2]);
    });
  }

  async function ack(p: PostboxSwPayload): Promise<boolean> {
    try {
      const res = await scope.fetch(`${base()}/v1/acks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.ack}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ids: [p.id] }),
      });
      return res.ok;
    } catch {
      return false; // offline: the page's stream delivers (and acks) it later
    }
  }

  const carriesWhole = (p: PostboxSwPayload) => Object.prototype.hasOwnProperty.call(p, 'data');

  async function showPush(payload: unknown): Promise<'shown' | 'handled' | 'not-postbox'> {
    const p = parse(payload);
    if (!p) return 'not-postbox';
    const open = await windows();
    if (handled.has(p.id) || (await Promise.all(open.map((c) => ask(c, p.id)))).some(Boolean)) return 'handled';
    await scope.registration.showNotification(p.title, {
      body: p.body ?? '',
      // The push's topic collapses notifications as it collapsed pushes; otherwise one per message.
      tag: p.topic ?? p.id,
      timestamp: Number(p.id.split('-')[0]),
      data: { postbox: p },
      ...(options.icon ? { icon: options.icon } : {}),
    });
    for (const client of open) client.postMessage({ type: 'postbox.notified', id: p.id });
    if (options.ack === 'shown' && carriesWhole(p)) await ack(p);
    return 'shown';
  }

  async function openNotification(notification: PostboxSwNotification): Promise<{ acked: boolean }> {
    const p = parse((notification.data as { postbox?: unknown } | null)?.postbox);
    if (!p) return { acked: false };
    notification.close();
    const mode = options.ack ?? 'click';
    const acked = mode !== 'never' && carriesWhole(p) && (mode === 'shown' || (await ack(p)));
    const target = new URL(options.open ?? '/', scope.location.origin).href;
    const open = await windows();
    let client: PostboxSwClient | null = open.find((c) => c.url.startsWith(target)) ?? null;
    try {
      // Browsers let a worker focus or open a window only while it handles a click.
      client = client ? ((await client.focus?.()) ?? client) : await scope.clients.openWindow(target);
    } catch {
      // Not allowed here (no click): the message was acked or stays for the stream all the same.
    }
    // Queued by the page's ServiceWorkerContainer until its client library listens (startMessages()).
    client?.postMessage(acked ? { type: 'postbox.message', id: p.id, event: p.event, data: p.data } : { type: 'postbox.notified', id: p.id });
    return { acked };
  }

  async function closeHandled(ids: string[]): Promise<void> {
    for (const id of ids) remember(id);
    for (const n of await scope.registration.getNotifications()) {
      const p = parse((n.data as { postbox?: unknown } | null)?.postbox);
      if (p && ids.includes(p.id)) n.close();
    }
  }

  function install(given: PostboxSwOptions = {}): void {
    options = { ...options, ...given };
    if (installed) return;
    installed = true;
    scope.addEventListener('push', (event: PostboxSwExtendableEvent & { data: { text(): string } | null }) => {
      const text = event.data?.text();
      if (text === undefined || !parse(text)) return; // not ours: another sender's push
      event.waitUntil(showPush(text));
    });
    scope.addEventListener('notificationclick', (event: PostboxSwExtendableEvent & { notification: PostboxSwNotification }) => {
      if (!parse((event.notification.data as { postbox?: unknown } | null)?.postbox)) return;
      event.waitUntil(openNotification(event.notification));
    });
    scope.addEventListener('message', (event: PostboxSwExtendableEvent & { data: unknown }) => {
      const m = event.data as { type?: unknown; ids?: unknown } | null;
      if (m?.type !== 'postbox.handled' || !Array.isArray(m.ids)) return;
      event.waitUntil(closeHandled(m.ids.filter((id): id is string => typeof id === 'string')));
    });
  }

  scope.postboxServiceWorker = { install, showPush, openNotification };

  // Registered as the worker itself (`/client/postbox-sw.js?open=/inbox`): install from the query.
  if (/\/postbox-sw\.js$/.test(scope.location.pathname)) {
    const query = new URLSearchParams(scope.location.search);
    const ackMode = query.get('ack');
    install({
      ...(query.get('url') ? { url: query.get('url') as string } : {}),
      ...(query.get('open') ? { open: query.get('open') as string } : {}),
      ...(ackMode === 'click' || ackMode === 'shown' || ackMode === 'never' ? { ack: ackMode } : {}),
    });
  }
})();
