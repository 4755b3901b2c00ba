import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { startRedis, type TestRedis } from '../test/helpers/start-redis.js';
import { HttpClient, round, runMain, runPool } from './lib.js';
import { BENCH_KEYS, startServer, type BenchServer } from './server.js';
import { openSubscriber, Tally } from './subscriber.js';

/*
 * `npm run bench:receipts`: what receipts and webhooks cost. Two postbox servers, each in its
 * own process with its own private redis-server (so each Redis's counters are its own): one with
 * receipts and webhooks off (RECEIPT_RETENTION_MS=0, no WEBHOOK_URL), one with them on (default
 * retention, the default webhook events, and a receiver in this process that verifies every
 * signature with standardwebhooks). Rounds alternate off, on, off, on..., so the machine's load
 * weighs on both alike. Each round pre-fills USERS × PER_USER messages (not measured), opens one
 * stream per user that acks in batches, and measures until every message is received and acked:
 * messages/s, and Redis CPU time and Redis commands (those inside scripts included) per message.
 * Then the memory each retained receipt takes (MEMORY USAGE of the receipt keys / receipts held).
 */

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const USERS = 100;
const PER_USER = 200;
const ACK = { batch: 50, delayMs: 10 };
/** Users with few receipts: their hash and sorted set stay listpack-encoded (≤ 128 entries). */
const SMALL = { users: 200, perUser: 20 };
const DEADLINE_MS = 60_000;
const WATCHDOG_MS = 600_000;
const RESULTS = fileURLToPath(new URL('receipts-results.json', import.meta.url));

/** The configurations compared: everything off, receipts only, receipts and webhooks. */
const SIDES = ['off', 'receipts', 'on'] as const;
type SideName = (typeof SIDES)[number];
const LABELS: Record<SideName, string> = {
  off: 'receipts and webhooks off',
  receipts: 'receipts on, webhooks off',
  on: 'receipts and webhooks on',
};

interface Side {
  name: SideName;
  redis: TestRedis;
  client: Redis;
  server: BenchServer;
  producer: HttpClient;
}

interface Round {
  side: SideName;
  messages: number;
  seconds: number;
  perSecond: number;
  redisCpuUsPerMessage: number;
  serverCpuUsPerMessage: number;
  redisCommandsPerMessage: number;
  /** On only: from the last ack to the last webhook event received, ms. */
  webhookLagMs?: number;
}

/** Per command: calls and µs, from INFO commandstats. */
async function commandStats(client: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const stats = await client.info('commandstats');
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1] ?? '', { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
}

/** Sum of every command's calls (scripts' inner calls included), and Redis CPU seconds. */
async function redisCounters(client: Redis): Promise<{ commands: number; cpu: number }> {
  const stats = await client.info('commandstats');
  let commands = 0;
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    // The scripts themselves are counted by what they call; INFO is this bench's own.
    if (!['eval', 'evalsha', 'info'].includes(m[1] ?? '')) commands += Number(m[2]);
  }
  const cpu = await client.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(cpu)?.[1] ?? Number.NaN);
  return { commands, cpu: field('used_cpu_user') + field('used_cpu_sys') };
}

/** A webhook endpoint that verifies each POST's signature and counts the events. */
async function startReceiver(secret: string): Promise<{ url: string; events: () => number; invalid: () => number; lastAt: () => number; close(): void }> {
  const verifier = new Webhook(secret);
  let events = 0;
  let invalid = 0;
  let lastAt = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        const payload = verifier.verify(body, req.headers as Record<string, string>) as { events: unknown[] };
        events += payload.events.length;
        lastAt = performance.now();
        res.writeHead(204).end();
      } catch {
        invalid += 1;
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/hooks`, events: () => events, invalid: () => invalid, lastAt: () => lastAt, close: () => server.close() };
}

async function prefill(side: Side, users: string[], perUser: number): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  await runPool({ concurrency: 8, total: users.length, deadlineMs: DEADLINE_MS }, async (i) => {
    const userId = users[i] ?? '';
    const res = await side.producer.postJson<{ token: string }>('/v1/tokens', { userId, ttlSeconds: 3600 }, BENCH_KEYS.API_KEY);
    tokens.set(userId, res.token);
  });
  const total = users.length * perUser;
  const fill = await runPool({ concurrency: 4, total: Math.ceil(total / 1000), deadlineMs: DEADLINE_MS }, (b) =>
    side.producer
      .postJson(
        '/v1/messages',
        {
          messages: Array.from({ length: Math.min(1000, total - b * 1000) }, (_, j) => ({
            userId: users[(b * 1000 + j) % users.length],
            data: { n: b * 1000 + j, text: 'x'.repeat(100) },
          })),
        },
        BENCH_KEYS.API_KEY,
      )
      .then(() => undefined),
  );
  if (fill.failed > 0 || fill.cutShort || tokens.size !== users.length) throw new Error(`pre-fill failed: ${fill.firstError}`);
  return tokens;
}

/** Opens a stream per user and waits until every message is received and acked. */
async function deliverAll(side: Side, users: string[], tokens: Map<string, string>, total: number) {
  const tally = new Tally();
  const acks = new HttpClient(side.server.url, 32);
  const start = performance.now();
  const subscribers = await Promise.all(
    users.map((userId) =>
      openSubscriber({ baseUrl: side.server.url, userId, token: tokens.get(userId) ?? '', acks, policy: ACK, tally }),
    ),
  );
  const done = await tally.until(() => tally.received >= total && tally.acked >= total, DEADLINE_MS);
  const seconds = (performance.now() - start) / 1000;
  for (const s of subscribers) s.close();
  acks.close();
  if (!done) throw new Error(`${side.name}: ${tally.received} received, ${tally.acked} acked of ${total} before the deadline`);
  return { seconds, endedAt: performance.now() };
}

async function runRound(side: Side, index: number, receiver: Awaited<ReturnType<typeof startReceiver>>): Promise<Round> {
  const users = Array.from({ length: USERS }, (_, i) => `r${index}-u${i}`);
  const total = USERS * PER_USER;
  const tokens = await prefill(side, users, PER_USER);
  const eventsBefore = receiver.events();
  const redisBefore = await redisCounters(side.client);
  const statsBefore = await commandStats(side.client);
  const serverBefore = (await side.server.metrics()).get('postbox_process_cpu_seconds_total') ?? Number.NaN;
  const { seconds, endedAt } = await deliverAll(side, users, tokens, total);
  const redisAfter = await redisCounters(side.client);
  if (process.env.BENCH_COMMANDSTATS === '1') {
    const after = await commandStats(side.client);
    const rows = [...after].map(([name, v]) => {
      const b0 = statsBefore.get(name) ?? { calls: 0, usec: 0 };
      return { name, calls: (v.calls - b0.calls) / total, usec: (v.usec - b0.usec) / total };
    }).filter((r) => r.calls > 0).sort((x, y) => y.usec - x.usec).slice(0, 14);
    console.log(`    ${side.name} per message: ${rows.map((r) => `${r.name} ${round(r.calls)}×/${round(r.usec)}µs`).join(', ')}`);
  }
  const serverAfter = (await side.server.metrics()).get('postbox_process_cpu_seconds_total') ?? Number.NaN;
  const round_: Round = {
    side: side.name,
    messages: total,
    seconds: round(seconds),
    perSecond: round(total / seconds),
    redisCpuUsPerMessage: round(((redisAfter.cpu - redisBefore.cpu) * 1e6) / total),
    serverCpuUsPerMessage: round(((serverAfter - serverBefore) * 1e6) / total),
    redisCommandsPerMessage: round((redisAfter.commands - redisBefore.commands) / total),
  };
  if (side.name === 'on') {
    // Not measured: the webhooks of this round arrive before the next round starts.
    const deadline = Date.now() + DEADLINE_MS;
    while (receiver.events() - eventsBefore < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (receiver.events() - eventsBefore < total) throw new Error(`on: ${receiver.events() - eventsBefore} of ${total} webhook events`);
    round_.webhookLagMs = round(Math.max(0, receiver.lastAt() - endedAt));
  }
  console.log(
    `  round ${index} ${side.name}: ${total} in ${round_.seconds} s → ${round_.perSecond}/s; redis ${round_.redisCpuUsPerMessage} µs, ${round_.redisCommandsPerMessage} commands, server ${round_.serverCpuUsPerMessage} µs per message` +
      (round_.webhookLagMs === undefined ? '' : `; last webhook ${round_.webhookLagMs} ms after the last ack`),
  );
  return round_;
}

/** Bytes of every receipt key of the side's Redis, and the receipts they hold. */
async function receiptMemory(client: Redis, match: string): Promise<{ receipts: number; bytes: number; bytesPerReceipt: number }> {
  let cursor = '0';
  let receipts = 0;
  let bytes = 0;
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    for (const rc of found) {
      const rt = rc.replace(/:rc$/, ':rt');
      receipts += await client.hlen(rc);
      bytes += Number(await client.memory('USAGE', rc, 'SAMPLES', 0)) + Number(await client.memory('USAGE', rt, 'SAMPLES', 0));
    }
  } while (cursor !== '0');
  return { receipts, bytes, bytesPerReceipt: round(bytes / Math.max(1, receipts)) };
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function main(): Promise<number> {
  const loadBefore = os.loadavg();
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const receiver = await startReceiver(secret);
  const sides: Side[] = [];
  const teardown = async () => {
    for (const s of sides) {
      s.producer.close();
      await s.server.stop();
      s.client.disconnect();
      await s.redis.kill('SIGTERM');
      await s.redis.stop();
    }
    receiver.close();
  };
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: still running after ${WATCHDOG_MS / 1000} s; stopping\n`);
    void teardown().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();
  try {
    const envs: Record<SideName, Record<string, string>> = {
      off: { RECEIPT_RETENTION_MS: '0' },
      receipts: {},
      on: { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret },
    };
    const names = (process.env.BENCH_SIDES?.split(',') ?? SIDES).filter((n): n is SideName => (SIDES as readonly string[]).includes(n));
    for (const name of names) {
      const redis = await startRedis();
      const server = await startServer(redis.url, { env: envs[name] });
      sides.push({ name, redis, client: redis.client(), server, producer: new HttpClient(server.url, 8) });
    }
    console.log(`bench:receipts: ${ROUNDS} rounds per side of ${USERS} users × ${PER_USER} messages; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
    // A warm-up round each (JIT, connections), not reported.
    for (const side of sides) await runRound(side, -1, receiver);
    const rounds: Round[] = [];
    // Interleaved, the order rotating each round, so no side always runs first or last.
    for (let i = 0; i < ROUNDS; i += 1) {
      for (let j = 0; j < sides.length; j += 1) rounds.push(await runRound(sides[(i + j) % sides.length] as Side, i, receiver));
    }

    const keeper = sides.find((s) => s.name !== 'off') ?? (sides[0] as Side);
    const large = await receiptMemory(keeper.client, 'pb:{r*}:rc');
    const small = { users: Array.from({ length: SMALL.users }, (_, i) => `small-${i}`), total: SMALL.users * SMALL.perUser };
    await deliverAll(keeper, small.users, await prefill(keeper, small.users, SMALL.perUser), small.total);
    const listpack = await receiptMemory(keeper.client, 'pb:{small-*}:rc');

    const summary = (name: SideName) => {
      const mine = rounds.filter((r) => r.side === name);
      return {
        perSecond: round(median(mine.map((r) => r.perSecond))),
        redisCpuUsPerMessage: round(median(mine.map((r) => r.redisCpuUsPerMessage))),
        serverCpuUsPerMessage: round(median(mine.map((r) => r.serverCpuUsPerMessage))),
        redisCommandsPerMessage: round(median(mine.map((r) => r.redisCommandsPerMessage))),
      };
    };
    const report = {
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, loadBefore: loadBefore.map(round), loadAfter: os.loadavg().map(round) },
      node: process.version,
      config: { rounds: ROUNDS, users: USERS, perUser: PER_USER, ack: ACK },
      rounds,
      median: Object.fromEntries(sides.map((side) => [side.name, summary(side.name)])),
      receiptMemory: { [`${PER_USER} per user (hashtable + skiplist)`]: large, [`${SMALL.perUser} per user (listpack)`]: listpack },
      webhookInvalid: receiver.invalid(),
    };
    writeFileSync(RESULTS, JSON.stringify(report, null, 2) + '\n');
    console.log('\n| side | delivered and acked /s | Redis CPU µs/msg | Redis commands/msg | server CPU µs/msg |');
    console.log('|---|---:|---:|---:|---:|');
    for (const side of sides) {
      const m = summary(side.name);
      console.log(`| ${LABELS[side.name]} | ${m.perSecond} | ${m.redisCpuUsPerMessage} | ${m.redisCommandsPerMessage} | ${m.serverCpuUsPerMessage} |`);
    }
    console.log(`\nmemory per retained receipt: ${large.bytesPerReceipt} B with ${PER_USER} per user (${large.receipts} receipts), ${listpack.bytesPerReceipt} B with ${SMALL.perUser} per user (${listpack.receipts} receipts)`);
    console.log(`webhook signatures refused by the receiver: ${receiver.invalid()}`);
    console.log(`load average before ${report.machine.loadBefore.join(' ')}, after ${report.machine.loadAfter.join(' ')}; results written to ${RESULTS}`);
    return receiver.invalid() > 0 ? 1 : 0;
  } finally {
    await teardown();
    clearTimeout(watchdog);
  }
}

runMain('bench', main);
