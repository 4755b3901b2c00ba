import { mkdtempSync, rmSync } from 'node:fs';
import type { ClientHttp2Session } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { h2Connect, h2Enqueue, h2Sse, h2Token, selfSignedCert, type TestCert } from '../helpers/h2-client.js';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// Node's own defaults cut a slow-header client after 60 s at best (headersTimeout), checked
// every 30 s: here postbox's settings, far shorter, must be what cuts it.
let redis: TestRedis;
let app: TestApp;
let capped: TestApp;
/** HTTPS: HTTP/2, and HTTP/1.1 for clients that do not offer h2. */
let secure: TestApp;
let dir: string;
let cert: TestCert;
const sessions: ClientHttp2Session[] = [];
const sockets: Socket[] = [];
const readers: SseReader[] = [];

const HEADERS_MS = 1000;
const REQUEST_MS = 1500;
/** How long a test waits for the server to cut a client: generous, and far below Node's 60 s. */
const CUT_DEADLINE_MS = 15_000;

beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'postbox-slow-'));
  cert = selfSignedCert(dir);
  const timeouts = { HTTP_HEADERS_TIMEOUT_MS: HEADERS_MS, HTTP_REQUEST_TIMEOUT_MS: REQUEST_MS, HTTP_KEEP_ALIVE_TIMEOUT_MS: 500 };
  [app, capped, secure] = await Promise.all([
    startApp(redis.url, { ...timeouts, HEARTBEAT_MS: 1000 }),
    startApp(redis.url, { KEY_PREFIX: 'capped', HTTP_MAX_CONNECTIONS: 3 }),
    startApp(redis.url, {
      ...timeouts,
      KEY_PREFIX: 'secure',
      HEARTBEAT_MS: 1000,
      TLS_CERT_FILE: cert.TLS_CERT_FILE,
      TLS_KEY_FILE: cert.TLS_KEY_FILE,
    }),
  ]);
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const r of readers) r.close();
  for (const s of sessions) s.destroy();
  await Promise.allSettled([app?.close(), capped?.close(), secure?.close()]);
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Raw {
  socket: Socket;
  received: () => string;
  /** Resolves when the server closes the connection. */
  closed: Promise<void>;
}

async function rawConnection(node: TestApp): Promise<Raw> {
  const { port } = new URL(node.url);
  const socket = connect(Number(port), '127.0.0.1');
  sockets.push(socket);
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => received, closed };
}

/** Resolves true if `closed` settles within the deadline. */
const cutWithin = (closed: Promise<void>, ms: number) =>
  Promise.race([closed.then(() => true), sleep(ms).then(() => false)]);

// Each test has its own connections and users, so they run side by side (their waits overlap).
describe.concurrent('slow clients', () => {
  it('cuts a slowloris client (headers one line at a time, never finished) with 408 after HTTP_HEADERS_TIMEOUT_MS', async ({ expect }) => {
    const raw = await rawConnection(app);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: postbox\r\n');
    let lines = 0;
    const drip = setInterval(() => {
      // A header line every 100 ms keeps the socket busy, so no idle timeout would ever fire.
      if (lines < 300 && !raw.socket.destroyed) raw.socket.write(`X-Drip-${(lines += 1)}: x\r\n`);
    }, 100);
    try {
      expect(await cutWithin(raw.closed, CUT_DEADLINE_MS)).toBe(true);
    } finally {
      clearInterval(drip);
    }
    expect(raw.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(lines).toBeGreaterThan(0);
  });

  it('cuts a connection that never sends a byte', async ({ expect }) => {
    const raw = await rawConnection(app);
    expect(await cutWithin(raw.closed, CUT_DEADLINE_MS)).toBe(true);
  });

  it('cuts a request whose body trickles in past HTTP_REQUEST_TIMEOUT_MS', async ({ expect }) => {
    const raw = await rawConnection(app);
    const token = await app.token('trickle');
    raw.socket.write(
      `POST /v1/acks HTTP/1.1\r\nHost: postbox\r\nAuthorization: Bearer ${token}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"ids":[',
    );
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < 1000 && !raw.socket.destroyed) raw.socket.write(`"1-${(sent += 1)}",`);
    }, 50);
    try {
      expect(await cutWithin(raw.closed, CUT_DEADLINE_MS)).toBe(true);
    } finally {
      clearInterval(drip);
    }
    expect(raw.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('closes an idle keep-alive connection after HTTP_KEEP_ALIVE_TIMEOUT_MS', async ({ expect }) => {
    const raw = await rawConnection(app);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: postbox\r\nConnection: keep-alive\r\n\r\n');
    expect(await cutWithin(raw.closed, CUT_DEADLINE_MS)).toBe(true);
    expect(raw.received()).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('keeps an event stream open far past both timeouts: they end when the request is received', async ({ expect }) => {
    const token = await app.token('long-lived');
    const reader = await openSse(app.streamUrl(token));
    readers.push(reader);
    expect(reader.status).toBe(200);
    let ended = false;
    void reader.ended.then(() => (ended = true));
    // Two request timeouts, on purpose: nothing may cut the stream meanwhile.
    await sleep(2 * REQUEST_MS);
    expect(ended).toBe(false);
    const id = await app.enqueue('long-lived', 'still here');
    const events = await reader.waitFor(1, 10_000);
    expect(events.map((e) => e.id)).toEqual([id]);
  });

  it('accepts at most HTTP_MAX_CONNECTIONS connections; the next is closed at once, and one frees a place', async ({ expect }) => {
    const held = await Promise.all([0, 1, 2].map(() => rawConnection(capped)));
    // Each holds a request under way, so none is an idle keep-alive connection.
    for (const raw of held) raw.socket.write('GET /healthz HTTP/1.1\r\nHost: postbox\r\n');
    const extra = await rawConnection(capped);
    extra.socket.write('GET /healthz HTTP/1.1\r\nHost: postbox\r\n\r\n');
    expect(await cutWithin(extra.closed, CUT_DEADLINE_MS)).toBe(true);
    expect(extra.received()).toBe('');
    const first = held[0] as Raw;
    first.socket.destroy();
    await first.closed;
    // The server learns of the close a moment later: try until a connection is served.
    const deadline = Date.now() + CUT_DEADLINE_MS;
    let served = false;
    while (!served && Date.now() < deadline) {
      const res = await fetch(`${capped.url}/healthz`).catch(() => undefined);
      served = res?.status === 200;
      if (!served) await sleep(50);
    }
    expect(served).toBe(true);
  });

  it('over TLS: cuts a client that never finishes the handshake, and a slowloris speaking HTTP/1.1', async ({ expect }) => {
    const { port } = new URL(secure.url);
    const silent = connect(Number(port), '127.0.0.1');
    sockets.push(silent);
    silent.on('error', () => undefined);
    expect(await cutWithin(new Promise<void>((r) => silent.once('close', () => r())), CUT_DEADLINE_MS)).toBe(true);

    const tls = tlsConnect({ port: Number(port), host: '127.0.0.1', ca: cert.ca, ALPNProtocols: ['http/1.1'] });
    sockets.push(tls);
    tls.on('error', () => undefined);
    let received = '';
    tls.setEncoding('utf8');
    tls.on('data', (chunk: string) => (received += chunk));
    const closed = new Promise<void>((r) => tls.once('close', () => r()));
    await new Promise<void>((resolve) => tls.once('secureConnect', () => resolve()));
    expect(tls.alpnProtocol).toBe('http/1.1');
    tls.write('GET /healthz HTTP/1.1\r\nHost: postbox\r\n');
    let lines = 0;
    const drip = setInterval(() => {
      if (lines < 300 && !tls.destroyed) tls.write(`X-Drip-${(lines += 1)}: x\r\n`);
    }, 100);
    try {
      expect(await cutWithin(closed, CUT_DEADLINE_MS)).toBe(true);
    } finally {
      clearInterval(drip);
    }
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('over HTTP/2: keeps an event stream open past both timeouts', async ({ expect }) => {
    const session = await h2Connect(secure.url, cert.ca);
    sessions.push(session);
    const token = await h2Token(session, secure.config.API_KEY, 'h2-long');
    const sse = await h2Sse(session, token);
    expect(sse.status).toBe(200);
    let ended = false;
    void sse.closed.then(() => (ended = true));
    await sleep(2 * REQUEST_MS);
    expect(ended).toBe(false);
    const id = await h2Enqueue(session, secure.config.API_KEY, 'h2-long', 'still here');
    const events = await sse.waitFor(1, 10_000);
    expect(events.map((e) => e.id)).toEqual([id]);
  });
});
