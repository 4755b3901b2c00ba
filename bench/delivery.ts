import { performance } from 'node:perf_hooks';
import { HttpClient, histogramQuantile, nowMs, percentile, round, runPool } from './lib.js';
import { API_KEY, enqueueBatch, enqueueOne, payload, type PhaseContext, type PhaseResult } from './phases.js';
import { openSubscriber, Tally, type Subscriber } from './subscriber.js';

/* The phases with SSE streams open: delivery throughput with acks, then enqueue→receive latency. */

/** The open streams of the delivery and latency phases. */
export interface Audience {
  subscribers: Subscriber[];
  tally: Tally;
  acks: HttpClient;
  close(): void;
}

/** Users, their stream tokens and their pre-filled mailboxes, ready for `deliveryWithAcks`. */
export interface Prefilled {
  users: string[];
  tokens: Map<string, string>;
  total: number;
}

/** Issues a token per user and pre-fills `streams × perUser` messages in batches of 1000; not measured. */
export async function prefill(ctx: PhaseContext): Promise<Prefilled> {
  const { streams, perUser } = ctx.config.delivery;
  const users = Array.from({ length: streams }, (_, i) => `deliver-${i}`);
  const text = 'x'.repeat(ctx.config.payloadBytes);
  const total = streams * perUser;

  const tokens = new Map<string, string>();
  const tokenPool = await runPool({ concurrency: 16, total: streams, deadlineMs: ctx.config.phaseDeadlineMs }, async (i) => {
    const userId = users[i] ?? '';
    const res = await ctx.producer.postJson<{ token: string }>('/v1/tokens', { userId, ttlSeconds: 3600 }, API_KEY);
    tokens.set(userId, res.token);
  });
  if (tokenPool.completed !== streams) throw new Error(`tokens: ${tokenPool.firstError}`);

  // Not measured, so it gets a longer deadline than a phase: the delivery phase needs all of it.
  const fill = await runPool(
    { concurrency: 4, total: Math.ceil(total / 1000), deadlineMs: 3 * ctx.config.phaseDeadlineMs },
    (b) =>
      enqueueBatch(
        ctx.producer,
        Array.from({ length: Math.min(1000, total - b * 1000) }, (_, j) => {
          const n = b * 1000 + j;
          return { userId: users[n % streams] ?? '', data: payload(n, text) };
        }),
      ),
  );
  if (fill.failed > 0 || fill.cutShort) throw new Error(`pre-fill failed: ${fill.firstError ?? 'deadline'}`);
  return { users, tokens, total };
}

/** Opens one stream per pre-filled user and measures until every message is received and acked. */
export async function deliveryWithAcks(
  ctx: PhaseContext,
  prefilled: Prefilled,
): Promise<{ result: PhaseResult; audience: Audience }> {
  const { streams, perUser, ack } = ctx.config.delivery;
  const { users, tokens, total } = prefilled;
  const tally = new Tally();
  const acks = new HttpClient(ctx.baseUrl, 32);
  const start = performance.now();
  const subscribers = await Promise.all(
    users.map((userId) =>
      openSubscriber({ baseUrl: ctx.baseUrl, userId, token: tokens.get(userId) ?? '', acks, policy: ack, tally }),
    ),
  );
  const done = await tally.until(() => tally.received >= total && tally.acked >= total, ctx.config.phaseDeadlineMs);
  const seconds = (performance.now() - start) / 1000;
  const messages = Math.min(tally.received, tally.acked);
  const audience: Audience = {
    subscribers,
    tally,
    acks,
    close() {
      for (const s of subscribers) s.close();
      acks.close();
    },
  };
  const result: PhaseResult = {
    name: 'delivery with acks',
    messages,
    seconds: round(seconds),
    perSecond: round(messages / seconds),
    failed: total - messages,
    cutShort: !done,
    notes: [
      `${streams} SSE streams, ${perUser} messages each pre-filled, acks of ${ack.batch} ids or after ${ack.delayMs} ms`,
      `duplicates ${tally.duplicates}, ack failures ${tally.ackFailures}`,
    ],
  };
  return { result, audience };
}

/**
 * With the audience connected, enqueues single messages at a steady `rate`
 * (open loop: a slow server does not slow the sender) round-robin over the
 * audience, each carrying its send time; receivers record the difference.
 */
export async function latency(ctx: PhaseContext, audience: Audience, rate: number): Promise<PhaseResult> {
  const { durationMs } = ctx.config.latency;
  const { tally, subscribers } = audience;
  const total = Math.floor((rate * durationMs) / 1000);
  const text = 'x'.repeat(ctx.config.payloadBytes);
  const samples: number[] = [];
  tally.onData = (data) => {
    const sent = (JSON.parse(data) as { t?: number }).t;
    if (typeof sent === 'number') samples.push(nowMs() - sent);
  };
  const receivedBefore = tally.received;
  const metricsBefore = await ctx.scrape();
  const requestMs: number[] = [];
  let sent = 0;
  let accepted = 0;
  let failed = 0;
  let firstError: string | undefined;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
      for (; sent < due; sent += 1) {
        const userId = subscribers[sent % subscribers.length]?.userId ?? '';
        const t = nowMs();
        enqueueOne(ctx.producer, userId, { t, n: sent, text }).then(
          () => {
            accepted += 1;
            requestMs.push(nowMs() - t);
          },
          (err: unknown) => {
            failed += 1;
            firstError ??= err instanceof Error ? err.message : String(err);
          },
        );
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  const sendSeconds = (performance.now() - start) / 1000;
  // Every request answered, then every accepted message received, within half a phase deadline.
  const settleBy = performance.now() + ctx.config.phaseDeadlineMs / 2;
  const answered = await waitFor(() => accepted + failed >= total, settleBy);
  const done = await tally.until(
    () => tally.received - receivedBefore >= accepted,
    Math.max(0, settleBy - performance.now()),
  );
  tally.onData = undefined;
  const metricsAfter = await ctx.scrape();
  const serverMs = (q: number) =>
    round(histogramQuantile(metricsBefore, metricsAfter, 'postbox_enqueue_to_write_seconds', q) * 1000);
  const result: PhaseResult = {
    name: `enqueue→receive latency at ${rate}/s`,
    messages: samples.length,
    // The sending window: the rate actually offered, not the time spent waiting for stragglers.
    seconds: round(sendSeconds),
    perSecond: round(accepted / sendSeconds),
    failed: failed + (accepted - samples.length),
    ...(firstError === undefined ? {} : { firstError }),
    cutShort: !answered || !done,
    requestMs: { p50: round(percentile(requestMs, 50)), p99: round(percentile(requestMs, 99)) },
    latencyMs: {
      samples: samples.length,
      p50: round(percentile(samples, 50)),
      p99: round(percentile(samples, 99)),
      ...(samples.length >= 5_000 ? { p999: round(percentile(samples, 99.9)) } : {}),
      max: round(percentile(samples, 100)),
    },
    serverEnqueueToWriteMs: { p50: serverMs(0.5), p99: serverMs(0.99) },
    notes: [`${subscribers.length} streams, single POSTs at a steady ${rate}/s for ${durationMs / 1000} s`],
  };
  return result;
}

/** Polls `condition` every 5 ms until it holds (true) or `deadline` (a `performance.now()` time) passes (false). */
async function waitFor(condition: () => boolean, deadline: number): Promise<boolean> {
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}
