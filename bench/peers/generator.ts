import { SignJWT } from 'jose';
import { percentile } from '../lib.js';
import { createAudience, nowMs, type Audience } from './audience.js';
import { createHttp, type Http } from './http.js';
import type { ClosedResult, Command, OpenResult, PacedOpenResult, RateResult, Reply, Request, StatsResult, TargetSpec } from './protocol.js';
import { OpenError } from './stream-open.js';

/*
 * One load-generator process of `npm run bench:peers` (forked, driven over
 * IPC). It holds its share of the users' SSE streams (audience.ts) and
 * publishes from its own source address (127.0.0.x), so several generators
 * never run out of ephemeral ports and each one's CPU time is reported.
 */

/** Bytes of each message's data, the payload the job carries. */
const PAYLOAD_BYTES = 64;

let target: TargetSpec | undefined;
let index = 0;
/** One keep-alive client per node of the target, for POSTs and for acks. */
let producers: Http[] = [];
let ackers: Http[] = [];
let audience: Audience | undefined;
const tokens = new Map<string, string>();

function spec(): TargetSpec {
  if (target === undefined) throw new Error('init first');
  return target;
}

function producerAt(node: number): Http {
  const http1 = producers[node];
  if (http1 === undefined) throw new Error(`no node ${node}: init first`);
  return http1;
}

/** `<send ms>|<epoch>|<generator>|<seq>|` padded to 64 bytes. */
function payload(epoch: number, seq: number): string {
  return `${nowMs().toFixed(3)}|${epoch}|${index}|${seq}|`.padEnd(PAYLOAD_BYTES, 'x');
}

/** Runs `task` over `items`, `concurrency` at a time. */
async function each<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<OpenResult> {
  const start = nowMs();
  let next = 0;
  let opened = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
        opened += 1;
      } catch (err) {
        failed += 1;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return { opened, failed, ms: nowMs() - start, ...(firstError === undefined ? {} : { firstError }) };
}

/** The target's TOKEN_SECRET as a key, once per target. */
let signingKey: { secret: string; key: Uint8Array } | undefined;

async function issueToken(userId: string): Promise<void> {
  const t = spec();
  if (t.dialect === 'nchan') return; // Nchan has no tokens: the channel id is in the URL.
  if (t.tokenSecret !== undefined) {
    // What POST /v1/tokens signs (src/http/tokens.ts): HS256, sub and exp; no request to the server.
    if (signingKey?.secret !== t.tokenSecret) signingKey = { secret: t.tokenSecret, key: new TextEncoder().encode(t.tokenSecret) };
    const iat = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(signingKey.key);
    tokens.set(userId, token);
    return;
  }
  const res = await producerAt(0).request('POST', '/v1/tokens', JSON.stringify({ userId, ttlSeconds: 3600 }), {
    'content-type': 'application/json',
    authorization: `Bearer ${t.apiKey}`,
  });
  if (res.status !== 201) throw new Error(`POST /v1/tokens → ${res.status}: ${res.body.slice(0, 200)}`);
  tokens.set(userId, (JSON.parse(res.body) as { token: string }).token);
}

/** One message (or a batch of them, postbox dialect) to random users; throws unless the answer is 2xx. */
async function publish(epoch: number, users: readonly string[], seq: number, batch: number): Promise<void> {
  const t = spec();
  // Through a random node, as a producer behind a load balancer would.
  const http1 = producerAt(Math.floor(Math.random() * producers.length));
  const pick = () => users[Math.floor(Math.random() * users.length)] ?? '';
  if (t.dialect === 'nchan') {
    const res = await http1.request('POST', `/pub/${pick()}`, payload(epoch, seq), { 'content-type': 'text/plain' });
    if (res.status !== 201 && res.status !== 202) throw new Error(`POST /pub → ${res.status}`);
    return;
  }
  const auth = { 'content-type': 'application/json', authorization: `Bearer ${t.apiKey}` };
  if (batch <= 1) {
    const res = await http1.request('POST', `/v1/users/${pick()}/messages`, JSON.stringify({ data: payload(epoch, seq) }), auth);
    if (res.status !== 201) throw new Error(`POST /v1/users/:id/messages → ${res.status}: ${res.body.slice(0, 200)}`);
    return;
  }
  const messages = Array.from({ length: batch }, (_, i) => ({ userId: pick(), data: payload(epoch, seq + i) }));
  const res = await http1.request('POST', '/v1/messages', JSON.stringify({ messages }), auth);
  if (res.status !== 201) throw new Error(`POST /v1/messages → ${res.status}: ${res.body.slice(0, 200)}`);
}

let seqCounter = 0;

/** Period of the paced opener's schedule, ms. */
const OPEN_TICK_MS = 5;

/** Opens a stream per user on a schedule of `rate`/s, at most `maxInflight` unanswered (protocol.ts). */
function openPaced(c: Extract<Command, { cmd: 'openPaced' }>): Promise<PacedOpenResult> {
  const a = audience;
  if (a === undefined) throw new Error('init first');
  const openMs: number[] = [];
  const errors: Record<string, number> = {};
  let next = 0;
  let inflight = 0;
  let opened = 0;
  let failed = 0;
  let behindMs = 0;
  let endMs = 0;
  const startMs = nowMs();
  return new Promise((resolve) => {
    const finish = () => {
      if (next < c.users.length || inflight > 0) return;
      clearInterval(tick);
      resolve({
        opened,
        failed,
        errors,
        startMs,
        endMs: endMs || nowMs(),
        openMs: { p50: percentile(openMs, 50), p99: percentile(openMs, 99), max: percentile(openMs, 100) },
        behindMs,
      });
    };
    const launch = () => {
      const userId = c.users[next] as string;
      if (c.rate > 0) behindMs = Math.max(0, nowMs() - (startMs + (next * 1000) / c.rate));
      next += 1;
      inflight += 1;
      const t0 = nowMs();
      a.open(userId, tokens.get(userId) ?? userId, 0, c.timeoutMs).then(
        () => {
          opened += 1;
          openMs.push(nowMs() - t0);
        },
        (err: unknown) => {
          failed += 1;
          const kind = err instanceof OpenError ? err.kind : err instanceof Error ? err.message.slice(0, 80) : String(err);
          errors[kind] = (errors[kind] ?? 0) + 1;
        },
      ).finally(() => {
        inflight -= 1;
        endMs = nowMs();
        top();
        finish();
      });
    };
    /** Sends what the schedule says is due, as far as `maxInflight` allows. */
    const top = () => {
      const due = c.rate > 0 ? Math.min(c.users.length, Math.floor(((nowMs() - startMs) * c.rate) / 1000) + 1) : c.users.length;
      while (next < due && inflight < c.maxInflight) launch();
    };
    // Every few ms, what fell due meanwhile (a handful of opens): a 1 ms timer would cost the
    // generator more CPU than the opens themselves.
    const tick = setInterval(top, OPEN_TICK_MS);
    top();
    finish();
  });
}

function openLoop(c: Extract<Command, { cmd: 'rate' }>): Promise<RateResult> {
  const scheduled = Math.floor((c.rate * c.durationMs) / 1000);
  const lags: number[] = [];
  const requestMs: number[] = [];
  let slot = 0;
  let sent = 0;
  let accepted = 0;
  let failed = 0;
  let notSent = 0;
  let inflight = 0;
  let firstError: string | undefined;
  const start = nowMs();
  return new Promise((resolve) => {
    const finish = () => {
      if (slot < scheduled || inflight > 0) return;
      resolve({
        scheduled,
        sent,
        accepted,
        failed,
        notSent,
        ...(firstError === undefined ? {} : { firstError }),
        lagMs: { p50: percentile(lags, 50), p99: percentile(lags, 99), max: percentile(lags, 100) },
        requestMs: { p50: percentile(requestMs, 50), p99: percentile(requestMs, 99) },
      });
    };
    const tick = setInterval(() => {
      const now = nowMs();
      const due = Math.min(scheduled, Math.floor(((now - start) * c.rate) / 1000));
      for (; slot < due; slot += 1) {
        lags.push(now - (start + (slot * 1000) / c.rate));
        if (inflight >= c.maxInflight) {
          notSent += 1;
          continue;
        }
        inflight += 1;
        sent += 1;
        const t0 = nowMs();
        publish(c.epoch, c.users, seqCounter++, 1).then(
          () => {
            accepted += 1;
            requestMs.push(nowMs() - t0);
          },
          (err: unknown) => {
            failed += 1;
            firstError ??= err instanceof Error ? err.message : String(err);
          },
        ).finally(() => {
          inflight -= 1;
          finish();
        });
      }
      if (slot >= scheduled) {
        clearInterval(tick);
        finish();
      }
    }, 1);
  });
}

async function closedLoop(c: Extract<Command, { cmd: 'closed' }>): Promise<ClosedResult> {
  const start = nowMs();
  let messages = 0;
  let requests = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (nowMs() - start < c.durationMs) {
      const seq = seqCounter;
      seqCounter += c.batch;
      requests += 1;
      try {
        await publish(c.epoch, c.users, seq, c.batch);
        messages += c.batch;
      } catch (err) {
        failed += 1;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, worker));
  return { messages, requests, failed, seconds: (nowMs() - start) / 1000, ...(firstError === undefined ? {} : { firstError }) };
}

function stats(epoch: number, withSamples: boolean): StatsResult {
  const a = audience;
  const t = a?.tally(epoch, withSamples) ?? { received: 0, duplicates: 0, samples: [] };
  const c = a?.counters ?? { acked: 0, ackRequests: 0, ackFailures: 0, streamsLost: 0, badFrames: 0 };
  const cpu = process.cpuUsage();
  return {
    received: t.received,
    duplicates: t.duplicates,
    ...c,
    streamsOpen: a?.size ?? 0,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    ...(withSamples ? { samples: t.samples } : {}),
  };
}

function closeAll(): void {
  audience?.close();
  audience = undefined;
  tokens.clear();
  for (const h of [...producers, ...ackers]) h.close();
  producers = [];
  ackers = [];
}

async function run(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case 'init':
      closeAll();
      target = command.target;
      index = command.index;
      for (const url of target.nodes ?? [target.baseUrl]) {
        producers.push(createHttp(url, { localAddress: command.localAddress, maxSockets: 256 }));
        ackers.push(createHttp(url, { localAddress: command.localAddress, maxSockets: 64 }));
      }
      audience = createAudience(target, command.localAddress, ackers);
      return { pid: process.pid };
    case 'tokens':
      return each(command.users, command.concurrency, issueToken);
    case 'open':
      return each(command.users, command.concurrency, (userId) => {
        if (audience === undefined) throw new Error('init first');
        return audience.open(userId, tokens.get(userId) ?? userId, command.node ?? 0);
      });
    case 'openPaced':
      return openPaced(command);
    case 'rate':
      return openLoop(command);
    case 'closed':
      return closedLoop(command);
    case 'stats':
      return stats(command.epoch, command.samples);
    case 'close':
      closeAll();
      return { closed: true };
  }
}

process.on('message', (message: Request) => {
  run(message.command).then(
    (result) => process.send?.({ id: message.id, ok: true, result } satisfies Reply),
    (err: unknown) => process.send?.({ id: message.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies Reply),
  );
});
// The bench exits, or is killed: never outlive it.
process.on('disconnect', () => process.exit(0));
