import http from 'node:http';
import { createAckBatcher, type AckBatcher } from '../../src/client/postbox.js';
import { percentile } from '../lib.js';
import { createHttp, type Http } from './http.js';
import type { ClosedResult, Command, OpenResult, RateResult, Reply, Request, StatsResult, TargetSpec } from './protocol.js';

/*
 * One load-generator process of `npm run bench:peers` (forked, driven over
 * IPC). It holds its share of the users' SSE streams, acks like postbox's
 * client library (its own ack batcher: at most every 100 ms or 100 ids), and
 * publishes from its own source address (127.0.0.x), so several generators
 * never run out of ephemeral ports and each one's CPU time is reported.
 */

/** Bytes of each message's data, the payload the job carries. */
const PAYLOAD_BYTES = 64;

/** Milliseconds on CLOCK_MONOTONIC, which every process on the machine shares. */
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

let target: TargetSpec | undefined;
let index = 0;
let localAddress = '127.0.0.1';
let producer: Http | undefined;
let acker: Http | undefined;
const tokens = new Map<string, string>();
const streams = new Map<string, { close(): void }>();
let streamsLost = 0;
let badFrames = 0;
let acked = 0;
let ackRequests = 0;
let ackFailures = 0;

/** Per epoch: ids received (sender|seq), duplicates, latency samples. */
const epochs = new Map<number, { seen: Set<string>; duplicates: number; samples: number[] }>();
const epochOf = (epoch: number) => {
  let e = epochs.get(epoch);
  if (e === undefined) {
    e = { seen: new Set(), duplicates: 0, samples: [] };
    epochs.set(epoch, e);
  }
  return e;
};

function spec(): TargetSpec {
  if (target === undefined) throw new Error('init first');
  return target;
}

/** `<send ms>|<epoch>|<generator>|<seq>|` padded to 64 bytes. */
function payload(epoch: number, seq: number): string {
  return `${nowMs().toFixed(3)}|${epoch}|${index}|${seq}|`.padEnd(PAYLOAD_BYTES, 'x');
}

function onData(raw: string): void {
  // postbox (and the naive baseline) send the data JSON-encoded: a quoted string here.
  const text = raw.startsWith('"') ? raw.slice(1, -1) : raw;
  const [sent, epoch, sender, seq] = text.split('|');
  if (seq === undefined) {
    badFrames += 1;
    return;
  }
  const e = epochOf(Number(epoch));
  const key = `${sender}|${seq}`;
  if (e.seen.has(key)) {
    e.duplicates += 1;
    return;
  }
  e.seen.add(key);
  e.samples.push(nowMs() - Number(sent));
}

async function postAcks(token: string, ids: string[]): Promise<void> {
  ackRequests += 1;
  const res = await (acker as Http).request('POST', '/v1/acks', JSON.stringify({ ids }), {
    'content-type': 'application/json',
    authorization: `Bearer ${token}`,
  });
  if (res.status !== 200) {
    ackFailures += ids.length;
    throw new Error(`POST /v1/acks → ${res.status}`);
  }
  acked += (JSON.parse(res.body) as { acked: number }).acked;
}

/** Opens one stream; resolves once the server answered 200. */
function openStream(userId: string): Promise<void> {
  const t = spec();
  const token = tokens.get(userId) ?? userId;
  const path = t.dialect === 'nchan' ? `/sub/${userId}` : `/v1/stream?token=${encodeURIComponent(token)}`;
  const batcher: AckBatcher | undefined = t.acks ? createAckBatcher({ send: (ids) => postAcks(token, ids) }) : undefined;
  const url = new URL(path, t.baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false, localAddress, headers: { accept: 'text/event-stream' } });
    let opened = false;
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url.pathname} → ${res.statusCode}`));
        return;
      }
      opened = true;
      streams.set(userId, {
        close() {
          void batcher?.close();
          req.destroy();
        },
      });
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        // Frames end with a blank line (WHATWG HTML §9.2.6); both servers use bare LF.
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id: string | undefined;
          let data: string | undefined;
          for (const line of frame.split('\n')) {
            if (line.startsWith('data:')) data = line.slice(line.startsWith('data: ') ? 6 : 5);
            else if (line.startsWith('id:')) id = line.slice(line.startsWith('id: ') ? 4 : 3);
          }
          if (data === undefined) continue;
          onData(data);
          if (id !== undefined) batcher?.add(id);
        }
      });
      res.on('error', () => undefined);
      res.on('close', () => {
        if (streams.delete(userId)) streamsLost += 1;
      });
      resolve();
    });
    req.on('error', (err) => {
      if (!opened) reject(err);
    });
    req.end();
  });
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

async function issueToken(userId: string): Promise<void> {
  const t = spec();
  if (t.dialect === 'nchan') return; // Nchan has no tokens: the channel id is in the URL.
  const res = await (producer as Http).request('POST', '/v1/tokens', JSON.stringify({ userId, ttlSeconds: 3600 }), {
    'content-type': 'application/json',
    authorization: `Bearer ${t.apiKey}`,
  });
  if (res.status !== 201) throw new Error(`POST /v1/tokens → ${res.status}: ${res.body.slice(0, 200)}`);
  tokens.set(userId, (JSON.parse(res.body) as { token: string }).token);
}

/** One message (or a batch of them, postbox dialect) to random users; resolves true on 2xx. */
async function publish(epoch: number, users: readonly string[], seq: number, batch: number): Promise<void> {
  const t = spec();
  const http1 = producer as Http;
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
  const e = epochOf(epoch);
  const cpu = process.cpuUsage();
  const result: StatsResult = {
    received: e.seen.size,
    duplicates: e.duplicates,
    acked,
    ackRequests,
    ackFailures,
    streamsOpen: streams.size,
    streamsLost,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    badFrames,
  };
  if (withSamples) {
    result.samples = e.samples;
    e.samples = [];
  }
  return result;
}

function closeAll(): void {
  for (const s of streams.values()) s.close();
  streams.clear();
  streamsLost = 0;
  tokens.clear();
  producer?.close();
  acker?.close();
  epochs.clear();
}

async function run(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case 'init':
      closeAll();
      target = command.target;
      index = command.index;
      localAddress = command.localAddress;
      producer = createHttp(target.baseUrl, { localAddress, maxSockets: 256 });
      acker = createHttp(target.baseUrl, { localAddress, maxSockets: 64 });
      return { pid: process.pid };
    case 'tokens':
      return each(command.users, command.concurrency, issueToken);
    case 'open':
      return each(command.users, command.concurrency, openStream);
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
