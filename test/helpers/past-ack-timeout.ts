import type { SseReader } from './read-sse.js';
import { waitUntil } from './wait-until.js';

/** How many times `id` arrived on `reader`. */
export const timesSeen = (reader: SseReader, id: string): number => reader.events.filter((e) => e.id === id).length;

/**
 * Proves, without a timed window, that every message these readers got before
 * now and that was still in flight has passed its ack timeout: it enqueues a
 * canary (with `enqueue`), leaves it unacked but reports it as failed each
 * time it arrives (`nack`, as the client library does for a handler that
 * threw: the page is alive, so the missed ack counts and the canary comes
 * again), and waits until every reader has got it twice. The canary was
 * written after those messages, so its ack timeout ended after theirs, and the
 * drain pass that redelivered it saw them overdue too. What has not come again
 * by then was acked (or removed).
 *
 * Needs MAX_DELIVERIES ≥ 2. Returns the canary's id; it stays in flight.
 */
export async function waitPastAckTimeout(
  readers: SseReader[],
  enqueue: () => Promise<string>,
  nack: (id: string) => Promise<unknown>,
): Promise<string> {
  const canary = await enqueue();
  let reported = 0;
  await waitUntil(
    async () => {
      const seen = Math.min(...readers.map((reader) => timesSeen(reader, canary)));
      if (seen > reported) {
        reported = seen;
        await nack(canary);
      }
      return seen >= 2;
    },
    `a canary message (${canary}) is delivered twice, so the ack timeout of what came before has passed`,
  );
  return canary;
}
