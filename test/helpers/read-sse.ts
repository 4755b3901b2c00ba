import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * A real SSE client over fetch, parsed with eventsource-parser: it collects
 * events, comments and the retry field, and lets a test wait for them.
 */
export interface SseReader {
  readonly status: number;
  readonly headers: Headers;
  readonly events: SseEvent[];
  readonly comments: string[];
  readonly retry: number | undefined;
  /** When each of `events` arrived (Date.now(), ms), same index. */
  readonly arrivals: number[];
  /** Resolves when `count` events have arrived in total; rejects after `timeoutMs` (default 20 s). */
  waitFor(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export async function openSse(
  url: string,
  options: { lastEventId?: string; headers?: Record<string, string> } = {},
): Promise<SseReader> {
  const controller = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream', ...options.headers };
  if (options.lastEventId) headers['last-event-id'] = options.lastEventId;
  const res = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  const arrivals: number[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  let retry: number | undefined;
  const parser = createParser({
    onEvent(message: EventSourceMessage) {
      events.push({ id: message.id, event: message.event ?? 'message', data: message.data });
      arrivals.push(Date.now());
      for (const w of waiters) w();
    },
    onComment(comment: string) {
      comments.push(comment);
      for (const w of waiters) w();
    },
    onRetry(ms: number) {
      retry = ms;
    },
  });
  const ended = (async () => {
    if (!res.body || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        parser.feed(decoder.decode(chunk, { stream: true }));
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    events,
    arrivals,
    comments,
    get retry() {
      return retry;
    },
    ended,
    waitFor(count, timeoutMs = 20_000) {
      if (events.length >= count) return Promise.resolve(events.slice());
      return new Promise((resolve, reject) => {
        const check = () => {
          if (events.length >= count) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(events.slice());
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`expected ${count} events within ${timeoutMs} ms, got ${events.length}`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close() {
      controller.abort();
    },
  };
}

/**
 * Resolves after `ms`. Only for asserting that something does NOT happen within
 * a window, with the configured timeouts a fraction of it (say why at the call);
 * to wait for something to happen, use waitUntil.
 */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
