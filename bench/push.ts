import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import webpush from 'web-push';
import { startPushService, type TestPushService } from '../test/helpers/push-service.js';
import { startRedis, type TestRedis } from '../test/helpers/start-redis.js';
import { HttpClient, histogramQuantile, round, runPool, sleep } from './lib.js';
import { BENCH_KEYS, startServer, type BenchServer } from './server.js';

/*
 * `npm run bench:push`: Web Push sending rate. A private redis-server, postbox in its own process
 * (production mode, VAPID keys set, PUSH_AFTER_MS=0, trusting the test push service through
 * NODE_EXTRA_CA_CERTS), and in this process the loopback push service (RFC 8030 over HTTPS; it
 * checks every VAPID signature and decrypts every payload, as a browser's push service and browser
 * would) plus the producer. USERS users have one subscription each and no open stream; MESSAGES
 * messages with a push option are enqueued in batches, and the figure is how many pushes per
 * second the push service accepted. Writes bench/push-results.json.
 */

const USERS = 500;
const WARMUP = 500;
const MESSAGES = 10_000;
const BATCH = 100;
const DEADLINE_MS = 180_000;
const WATCHDOG_MS = 300_000;
const RESULTS = fileURLToPath(new URL('push-results.json', import.meta.url));

async function enqueueAll(http: HttpClient, count: number, offset: number): Promise<void> {
  const batches = Math.ceil(count / BATCH);
  const pool = await runPool({ concurrency: 4, total: batches, deadlineMs: DEADLINE_MS }, async (b) => {
    const messages = Array.from({ length: Math.min(BATCH, count - b * BATCH) }, (_, i) => {
      const n = offset + b * BATCH + i;
      return { userId: `pu${n % USERS}`, event: 'note', data: { n, text: 'a message for a closed tab' }, push: { title: `note ${n}`, body: 'from the bench' } };
    });
    await http.postJson('/v1/messages', { messages }, BENCH_KEYS.API_KEY, [201]);
  });
  if (pool.failed > 0 || pool.cutShort) throw new Error(`enqueue failed: ${pool.firstError ?? 'deadline'}`);
}

async function waitAccepted(push: TestPushService, count: number): Promise<void> {
  await push.waitFor((all) => all.filter((r) => r.status === 201).length >= count, DEADLINE_MS);
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  let redis: TestRedis | undefined;
  let push: TestPushService | undefined;
  let server: BenchServer | undefined;
  let http: HttpClient | undefined;
  try {
    redis = await startRedis();
    push = await startPushService();
    const vapid = webpush.generateVAPIDKeys();
    server = await startServer(redis.url, {
      env: {
        VAPID_PUBLIC_KEY: vapid.publicKey,
        VAPID_PRIVATE_KEY: vapid.privateKey,
        VAPID_SUBJECT: 'mailto:bench@postbox.example',
        PUSH_AFTER_MS: '0',
        PUSH_ALLOW_PRIVATE_ENDPOINTS: '1',
        NODE_EXTRA_CA_CERTS: push.caFile,
        ALLOW_VOLATILE_REDIS: '1',
      },
    });
    http = new HttpClient(server.url, 16);
    const client = http;
    const service = push;

    // One subscription per user, restricted to postbox's key as a browser's would be.
    const setup = await runPool({ concurrency: 16, total: USERS, deadlineMs: DEADLINE_MS }, async (i) => {
      const { token } = await client.postJson<{ token: string }>('/v1/tokens', { userId: `pu${i}` }, BENCH_KEYS.API_KEY, [201]);
      await client.postJson('/v1/push/subscriptions', service.subscribe({ applicationServerKey: vapid.publicKey }), token, [201]);
    });
    if (setup.failed > 0) throw new Error(`subscriptions failed: ${setup.firstError}`);

    await enqueueAll(http, WARMUP, 0);
    await waitAccepted(push, WARMUP);
    await sleep(500);

    const before = await server.metrics();
    const cpuBefore = process.cpuUsage();
    const t0 = performance.now();
    const firstIndex = push.received.length;
    await enqueueAll(http, MESSAGES, WARMUP);
    const enqueuedMs = performance.now() - t0;
    await waitAccepted(push, WARMUP + MESSAGES);
    const elapsedMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpuBefore);
    const after = await server.metrics();

    const measured = push.received.slice(firstIndex);
    const bad = measured.filter((r) => r.status !== 201 || !r.vapid.valid || r.payload === null);
    const sending = (measured.at(-1)?.receivedAt ?? 0) - (measured[0]?.receivedAt ?? 0);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const results = {
      at: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadBefore: loadBefore.map(round) },
      users: USERS,
      messages: MESSAGES,
      pushesPerSecond: round(MESSAGES / (elapsedMs / 1000)),
      sendingPushesPerSecond: round(MESSAGES / (sending / 1000)),
      enqueueMs: round(enqueuedMs),
      elapsedMs: round(elapsedMs),
      notAcceptedOrInvalid: bad.length,
      server: {
        sent: delta('postbox_push_sent_total'),
        cpuUsPerPush: round((delta('postbox_process_cpu_seconds_total') * 1e6) / MESSAGES),
        requestP50Ms: round(histogramQuantile(before, after, 'postbox_push_request_seconds', 0.5) * 1000),
        requestP99Ms: round(histogramQuantile(before, after, 'postbox_push_request_seconds', 0.99) * 1000),
        latencyP50S: histogramQuantile(before, after, 'postbox_push_latency_seconds', 0.5),
        latencyP99S: histogramQuantile(before, after, 'postbox_push_latency_seconds', 0.99),
      },
      pushServiceCpuUsPerPush: round((cpu.user + cpu.system) / MESSAGES),
    };
    writeFileSync(RESULTS, JSON.stringify(results, null, 2) + '\n');
    console.log(`Web Push: ${results.pushesPerSecond} pushes/s end to end (${MESSAGES} messages, ${USERS} subscriptions)`);
    console.log(`  sending alone: ${results.sendingPushesPerSecond} pushes/s; enqueue of all ${results.enqueueMs} ms`);
    console.log(`  push request p50 ${results.server.requestP50Ms} ms, p99 ${results.server.requestP99Ms} ms (bucket bounds)`);
    console.log(`  server CPU ${results.server.cpuUsPerPush} µs/push; push service (decrypt + VAPID check) ${results.pushServiceCpuUsPerPush} µs/push`);
    console.log(`  refused or invalid: ${results.notAcceptedOrInvalid}; load before ${results.machine.loadBefore.join(' ')}`);
    console.log(`  written to ${RESULTS}`);
  } finally {
    http?.close();
    await server?.stop();
    await push?.close();
    await redis?.stop();
  }
}

const watchdog = setTimeout(() => {
  console.error(`bench:push did not finish in ${WATCHDOG_MS / 1000} s`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
