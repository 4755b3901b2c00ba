import { openSse, sleep, type SseReader } from './read-sse.js';

/** A page of one user that keeps a stream open, acks what it gets and remembers it. */
export interface AckingPage {
  /** Every message event it got, by id (repeats fold into one): its data. */
  readonly seen: Map<string, string>;
  /** Streams that opened (200 and an event stream), the first one included. */
  readonly opened: number;
  /** Acks that were not answered 200 (an error status, or no answer). */
  readonly failedAcks: number;
  /** Stops reconnecting, closes the stream and waits for the acks under way. */
  stop(): Promise<void>;
}

/** Pause between two looks at the open stream, and before opening another, ms. */
const LOOK_MS = 20;
const REOPEN_MS = 100;

/**
 * Opens the user's stream on `base` (a server's URL) with `token`, and opens it again whenever it
 * ends or cannot open, as EventSource would; acks every message it gets through the same server
 * (`POST /v1/acks`, failures ignored: what is not acked comes again). Control events are not
 * recorded. The loop stops only with stop().
 */
export function openAckingPage(base: string, token: string): AckingPage {
  const seen = new Map<string, string>();
  const url = `${base}/v1/stream?token=${encodeURIComponent(token)}`;
  let opened = 0;
  let failedAcks = 0;
  let reader: SseReader | undefined;
  let acking = Promise.resolve();
  let stopped = false;
  const ack = (ids: string[]) =>
    fetch(`${base}/v1/acks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ids }),
      signal: AbortSignal.timeout(30_000),
    }).then(
      async (res) => {
        if (res.status !== 200) failedAcks += 1;
        await res.body?.cancel();
      },
      () => {
        failedAcks += 1;
      },
    );
  const loop = (async () => {
    while (!stopped) {
      try {
        reader = await openSse(url);
        if (reader.status === 200) opened += 1;
        let done = 0;
        let ended = false;
        void reader.ended.then(() => (ended = true));
        while (!ended && !stopped) {
          const fresh = reader.events.slice(done).filter((e) => e.id && !e.event.startsWith('postbox.'));
          done = reader.events.length;
          for (const e of fresh) seen.set(e.id!, e.data);
          if (fresh.length > 0) {
            const ids = fresh.map((e) => e.id!);
            acking = acking.then(() => ack(ids));
          }
          await sleep(LOOK_MS);
        }
      } catch {
        // The server is down for a moment; EventSource would retry, so do we.
      }
      reader?.close();
      if (!stopped) await sleep(REOPEN_MS);
    }
  })();
  return {
    seen,
    get opened() {
      return opened;
    },
    get failedAcks() {
      return failedAcks;
    },
    async stop() {
      stopped = true;
      reader?.close();
      await loop;
      await acking;
    },
  };
}
