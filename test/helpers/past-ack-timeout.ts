import type { SseReader } from './read-sse.js';
import { waitUntil } from './wait-until.js';

/** How many times `id` arrived on `reader`. */
export const timesSeen = (reader: SseReader, id: string): number => reader.events.filter((e) => e.id === id).length;

/**
 * Proves, without a timed window, that every message these readers got before
 * now and that was still in flight has passed its ack timeout: it enqueues a
 * canary (with `enqueue`), leaves it unacked and waits until every reader has
 * got it twice. The canary was written after those messages, so its ack
 * timeout ended after theirs, and the drain pass that redelivered it saw them
 * overdue too. What has not come again by then was acked (or removed).
 *
 * Needs MAX_DELIVERIES ≥ 2. Returns the canary's id; it stays in flight.
 */
export async function waitPastAckTimeout(readers: SseReader[], enqueue: () => Promise<string>): Promise<string> {
  const canary = await enqueue();
  await waitUntil(
    () => readers.every((reader) => timesSeen(reader, canary) >= 2),
    `a canary message (${canary}) is delivered twice, so the ack timeout of what came before has passed`,
  );
  return canary;
}
