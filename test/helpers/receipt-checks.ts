import type { TestApp } from './start-app.js';
import { eventually } from './wait-until.js';

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
  const found = await eventually(
    () => statusOf(app, userId, id),
    (status) => typeof status === 'object' && status.state === state,
    `${userId}/${id} is ${state}`,
    timeoutMs,
  );
  return found as StatusBody;
}

/** One series of /metrics, e.g. `postbox_webhooks_requests_total{result="5xx"}`; 0 when absent. */
export async function metric(app: TestApp, series: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
