import { openSse } from './read-sse.js';
import type { TestApp } from './start-app.js';

/**
 * Plays a page whose handler fails on every message of `userId`: it reports
 * each failure (`POST /v1/nacks`, as the client library does), so each ack
 * timeout counts as a delivery, until the admin shows `count` dead letters.
 * A stream the server closes is opened again, as EventSource does.
 */
export async function failUntilDead(app: TestApp, userId: string, count: number, timeoutMs = 30_000): Promise<void> {
  const token = await app.token(userId);
  const deadline = Date.now() + timeoutMs;
  const dead = async () =>
    (((await (await app.admin(`/admin/queues/${userId}`)).json()) as { dead?: number }).dead ?? 0) >= count;
  while (Date.now() < deadline) {
    const reader = await openSse(app.streamUrl(token));
    let ended = false;
    void reader.ended.then(() => (ended = true));
    let reported = 0;
    try {
      while (!ended && Date.now() < deadline) {
        const ids = reader.events.slice(reported).flatMap((e) => (e.id && !e.event.startsWith('postbox.') ? [e.id] : []));
        reported = reader.events.length;
        if (ids.length > 0) {
          await fetch(`${app.url}/v1/nacks`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ ids }),
          });
        }
        if (await dead()) return;
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      reader.close();
    }
  }
  throw new Error(`${userId}: fewer than ${count} dead letters after ${timeoutMs} ms`);
}
