import { sleep } from './read-sse.js';
import type { TestApp } from './start-app.js';

/** What `GET /v1/users/:userId/messages/:id` answers (src/queue/receipts.ts MessageStatus). */
export interface StatusBody {
  id: string;
  state: string;
  deliveries: number;
  attempts: number;
  enqueuedAt: string;
  firstDeliveredAt?: string;
  ackedAt?: string;
  deadAt?: string;
  expiredAt?: string;
  reason?: string;
  scheduledId?: string;
  eventId?: string;
  deliverAt?: string;
}

/** Polls `check` every 25 ms until it holds; throws naming `what` after `timeoutMs`. Bounded in time. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

/** The status of one message, or the HTTP status when it is not 200. */
export async function statusOf(app: TestApp, userId: string, id: string): Promise<StatusBody | number> {
  const res = await fetch(`${app.url}/v1/users/${encodeURIComponent(userId)}/messages/${encodeURIComponent(id)}`, {
    headers: { authorization: `Bearer ${app.config.API_KEY}` },
  });
  if (res.status !== 200) {
    await res.body?.cancel();
    return res.status;
  }
  return (await res.json()) as StatusBody;
}

/** Waits until the message's status is `state` and returns it. */
export async function waitForState(app: TestApp, userId: string, id: string, state: string, timeoutMs = 20_000): Promise<StatusBody> {
  let last: StatusBody | number = 0;
  await waitUntil(
    async () => {
      last = await statusOf(app, userId, id);
      return typeof last === 'object' && last.state === state;
    },
    `${userId}/${id} is ${state} (last: ${JSON.stringify(last)})`,
    timeoutMs,
  );
  return last as unknown as StatusBody;
}

/** One series of /metrics, e.g. `postbox_webhooks_requests_total{result="5xx"}`; 0 when absent. */
export async function metric(app: TestApp, series: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
