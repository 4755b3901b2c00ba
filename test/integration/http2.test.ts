import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { constants, type ClientHttp2Session } from 'node:http2';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import { ConfigError, testConfig } from '../../src/config.js';
import {
  h2Call,
  h2Connect,
  h2Enqueue,
  h2Sse,
  h2Token,
  selfSignedCert,
  sseCollector,
  waitForEvents,
  type TestCert,
} from '../helpers/h2-client.js';
import { startApp } from '../helpers/start-app.js';
import { startNodeForTest, useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

/* With TLS_CERT_FILE and TLS_KEY_FILE a node serves HTTP/2, so one browser connection carries every tab's stream. */

let dir: string;
let cert: TestCert;
let tls: { TLS_CERT_FILE: string; TLS_KEY_FILE: string };
const sessions: ClientHttp2Session[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'postbox-tls-'));
  cert = selfSignedCert(dir);
  tls = { TLS_CERT_FILE: cert.TLS_CERT_FILE, TLS_KEY_FILE: cert.TLS_KEY_FILE };
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});
// The overrides are read when the node starts, after the certificate above exists.
const node = useNode(() => ({ ...tls, DRAIN_INTERVAL_MS: 50 }));
afterAll(() => {
  for (const session of sessions) session.destroy();
});

async function connect(url: string): Promise<ClientHttp2Session> {
  const session = await h2Connect(url, cert.ca);
  sessions.push(session);
  return session;
}

/** An HTTP/1.1 request over TLS (node:https offers no h2 in ALPN), trusting the test certificate. */
function https1(url: string, options: RequestOptions, body?: unknown): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca: cert.ca, ...options }, resolve);
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function readJson<T>(res: IncomingMessage): Promise<T> {
  let text = '';
  for await (const chunk of res) text += String(chunk);
  return JSON.parse(text) as T;
}

describe('TLS configuration', () => {
  it('refuses only one of TLS_CERT_FILE and TLS_KEY_FILE', () => {
    expect(() => testConfig({ TLS_CERT_FILE: '/etc/postbox/cert.pem' })).toThrow(ConfigError);
    expect(() => testConfig({ TLS_KEY_FILE: '/etc/postbox/key.pem' })).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/);
  });

  it('refuses to start when a TLS file cannot be read, naming it', async () => {
    const missing = join(dir, 'missing.pem');
    await expect(startApp(node.redis.url, { ...tls, TLS_CERT_FILE: missing })).rejects.toThrow(
      new RegExp(`TLS_CERT_FILE: cannot read ${missing}`),
    );
  });
});

describe('HTTP/2 over TLS', () => {
  it('serves https:// and negotiates h2', async () => {
    const { app } = node;
    expect(app.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const session = await connect(app.url);
    expect(session.alpnProtocol).toBe('h2');
    expect((await h2Call(session, 'GET', '/healthz', '')).status).toBe(200);
  });

  it('holds 8 streams of one user on one connection (browsers allow 6 over HTTP/1.1) and delivers to all', async () => {
    const { app } = node;
    const session = await connect(app.url);
    const token = await h2Token(session, app.config.API_KEY, 'many-tabs');
    const tabs = await Promise.all(Array.from({ length: 8 }, () => h2Sse(session, token)));
    for (const tab of tabs) {
      expect(tab.status).toBe(200);
      expect(tab.headers['content-type']).toMatch(/^text\/event-stream/);
      // Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2).
      expect(tab.headers.connection).toBeUndefined();
    }
    expect(app.postbox.hub.count('many-tabs')).toBe(8);

    const id = await h2Enqueue(session, app.config.API_KEY, 'many-tabs', { text: 'to every tab' });
    for (const tab of tabs) {
      expect(await tab.waitFor(1)).toEqual([{ id, event: 'message', data: '{"text":"to every tab"}' }]);
    }

    // The ack shares the connection with the 8 open streams: nothing queues behind them.
    const acked = await h2Call(session, 'POST', '/v1/acks', token, { ids: [id] });
    expect(acked).toMatchObject({ status: 200, body: { acked: 1 } });
    const view = await h2Call(session, 'GET', '/admin/queues/many-tabs', app.config.ADMIN_KEY);
    expect(view.body).toMatchObject({ waiting: 0, inflight: 0, connections: 8 });
    for (const tab of tabs) tab.stream.close();
  });

  it('still speaks HTTP/1.1 over TLS to clients that do not offer h2', async () => {
    const { app } = node;
    const agent = new Agent({ keepAlive: true, ca: cert.ca });
    const headers = { authorization: `Bearer ${app.config.API_KEY}`, 'content-type': 'application/json' };
    const post = { method: 'POST', agent, headers };
    const tokenRes = await https1(`${app.url}/v1/tokens`, post, { userId: 'old-client' });
    expect(tokenRes.httpVersion).toBe('1.1');
    const { token } = await readJson<{ token: string }>(tokenRes);

    const stream = await https1(`${app.url}/v1/stream?token=${token}`, { agent });
    expect(stream.statusCode).toBe(200);
    expect(stream.httpVersion).toBe('1.1');
    // HTTP/1.1 keeps the header the SSE spec asks for.
    expect(stream.headers.connection).toBe('keep-alive');
    const { events, feed } = sseCollector();
    stream.setEncoding('utf8');
    stream.on('data', feed);

    const sent = await https1(`${app.url}/v1/users/old-client/messages`, post, { data: 42 });
    expect(sent.statusCode).toBe(201);
    const { id } = await readJson<{ id: string }>(sent);
    expect(await waitForEvents(events, 1)).toEqual([{ id, event: 'message', data: '42' }]);
    stream.destroy();
    agent.destroy();
  });

  it('closing the node ends its HTTP/2 streams cleanly, sends GOAWAY, and does not wait for its deadline', async () => {
    // A clock on which no timeout ever fires: the only one a node sets outside a stalled write is
    // its close deadline (5 s), after which it destroys what is left. With it gone, close()
    // returns only if every connection ended by itself, however slow the machine.
    const noDeadlines: Clock = {
      ...systemClock,
      setTimeout: () => {
        const never = setTimeout(() => undefined, 2_147_483_647);
        never.unref();
        return never;
      },
    };
    const other = await startNodeForTest(node.redis, { ...tls, DRAIN_INTERVAL_MS: 50 }, { clock: noDeadlines });
    const session = await connect(other.url);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const token = await h2Token(session, other.config.API_KEY, 'leaving');
    const tabs = await Promise.all(Array.from({ length: 3 }, () => h2Sse(session, token)));
    // An idle HTTP/1.1 keep-alive connection too: it must not hold the close up.
    const agent = new Agent({ keepAlive: true, ca: cert.ca });
    await readJson(await https1(`${other.url}/healthz`, { agent }));

    let closed = false;
    const closing = other.close().then(() => (closed = true));
    await waitUntil(() => closed, 'close() returns without its deadline');
    await closing;
    expect(await Promise.all(tabs.map((tab) => tab.closed))).toEqual(Array(3).fill(constants.NGHTTP2_NO_ERROR));
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR);
    agent.destroy();
  });
});

describe('the demo over TLS', () => {
  it("calls this node's API over HTTPS, trusting the node's own certificate", async () => {
    const demo = await startNodeForTest(node.redis, { ...tls, DEMO: 1, KEY_PREFIX: 'pbdemo' });
    const session = await connect(demo.url);
    const login = await h2Call(session, 'POST', '/demo/api/login', '', { name: 'alice' });
    expect(login).toMatchObject({ status: 200, body: { userId: 'alice', token: expect.any(String) } });
    const sent = await h2Call(session, 'POST', '/demo/api/send', '', { from: 'alice', to: 'alice', text: 'hi' });
    expect(sent.status).toBe(202);
  });
});

describe('backpressure over HTTP/2', () => {
  it('closes a stream whose reader stops reading, leaves the connection serving others, and redelivers', async () => {
    const slow = await startNodeForTest(node.redis, {
      ...tls,
      KEY_PREFIX: 'pbslow',
      // The default, far longer than an event-loop pause of this process at load 20 (the watchdog
      // fires in the timers phase, before pending reads run): the healthy reader below must not look
      // stalled. The stalled one is waited for, however long it takes.
      WRITE_STALL_MS: 10_000,
      MESSAGE_MAX_BYTES: 1024 * 1024,
      BODY_MAX_BYTES: 2 * 1024 * 1024,
      MAX_INFLIGHT: 20,
      ACK_TIMEOUT_MS: 60_000,
      DRAIN_INTERVAL_MS: 50,
    });
    const apiKey = slow.config.API_KEY;
    const producer = await connect(slow.url);
    const token = await h2Token(producer, apiKey, 'slow');
    // A reader that stops reading: HTTP/2 flow control holds the server's sends on that stream
    // once its window is used up, so its writes pile up in the response (writableLength) as on
    // an HTTP/1.1 socket, while the other streams of the connection go on.
    const reader = await connect(slow.url);
    const stalled = await h2Sse(reader, token);
    stalled.stream.pause();
    const healthy = await h2Sse(reader, await h2Token(producer, apiKey, 'fast'));
    const big = 'x'.repeat(900 * 1024);
    const ids: string[] = [];
    for (let i = 0; i < 20; i += 1) ids.push(await h2Enqueue(producer, apiKey, 'slow', { i, big }));
    const note = await h2Enqueue(producer, apiKey, 'fast', 'still here');
    expect(await healthy.waitFor(1)).toMatchObject([{ id: note, data: '"still here"' }]);

    await waitUntil(() => slow.postbox.hub.count('slow') === 0, 'the server closes the stalled stream');
    const metrics = await h2Call(producer, 'GET', '/metrics', '');
    expect(String(metrics.body)).toMatch(/postbox_streams_closed_total\{reason="write stalled"\} 1/);

    // The browser reconnects over the same connection: every message comes again, in order, same ids.
    const again = await h2Sse(reader, token);
    // 18 MB, which takes a while on a loaded machine.
    expect((await again.waitFor(20, 60_000)).map((e) => e.id)).toEqual(ids);
    // The paused stream would keep this client's connection open past GOAWAY until the close deadline.
    reader.destroy();
  });
});
