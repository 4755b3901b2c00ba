import http from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { HttpClient } from './lib.js';

/**
 * Counters shared by every subscriber of a run, and a way to wait on them.
 * `onData`, when set, sees the `data` of every first delivery (the latency
 * phase parses send times from it; the throughput phase leaves it unset so
 * the generator spends no CPU on JSON).
 */
export class Tally {
  /** Distinct messages received. */
  received = 0;
  /** Messages received again (redelivered, or sent to a second stream). */
  duplicates = 0;
  /** Messages the server reported as acked. */
  acked = 0;
  /** Ids whose ack call failed. */
  ackFailures = 0;
  onData: ((data: string) => void) | undefined;
  private readonly waiters = new Set<() => void>();

  /** Wakes anyone waiting; called on every change. */
  changed(): void {
    for (const check of this.waiters) check();
  }

  /** Resolves true once `condition` holds, false after `timeoutMs`. */
  until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(false);
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}

/** How a subscriber acknowledges: like the browser client, in batches, soon. */
export interface AckPolicy {
  /** Ack at once when this many ids are pending. */
  batch: number;
  /** Otherwise ack this long after the first pending id, ms. */
  delayMs: number;
}

/** One user's open SSE stream that acks what it receives. */
export interface Subscriber {
  readonly userId: string;
  close(): void;
}

/**
 * Opens `GET /v1/stream` with a Bearer stream token over its own socket,
 * parses it with eventsource-parser and acks every new id through `acks`.
 * Resolves once the response headers arrive with status 200.
 */
export function openSubscriber(options: {
  baseUrl: string;
  userId: string;
  token: string;
  acks: HttpClient;
  policy: AckPolicy;
  tally: Tally;
}): Promise<Subscriber> {
  const { baseUrl, userId, token, acks, policy, tally } = options;
  const url = new URL('/v1/stream', baseUrl);
  const seen = new Set<string>();
  let pending: string[] = [];
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const ids = pending;
    pending = [];
    acks
      .postJson<{ acked: number }>('/v1/acks', { ids }, token, [200])
      .then((res) => {
        tally.acked += res.acked;
      })
      .catch(() => {
        tally.ackFailures += ids.length;
      })
      .finally(() => tally.changed());
  };

  const parser = createParser({
    onEvent(message: EventSourceMessage) {
      const id = message.id;
      if (id === undefined) return;
      if (seen.has(id)) {
        tally.duplicates += 1;
      } else {
        seen.add(id);
        tally.received += 1;
        tally.onData?.(message.data);
      }
      // A duplicate is acked again too: the first ack may not have reached the server.
      pending.push(id);
      if (pending.length >= policy.batch) flush();
      else timer ??= setTimeout(flush, policy.delayMs);
      tally.changed();
    },
  });

  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      agent: false,
      headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET /v1/stream for ${userId} → ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('error', () => undefined);
      resolve({
        userId,
        close() {
          clearTimeout(timer);
          req.destroy();
        },
      });
    });
    req.on('error', reject);
    req.end();
  });
}
