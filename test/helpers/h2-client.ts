import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { createParser } from 'eventsource-parser';
import type { SseEvent } from './read-sse.js';
import { waitUntil } from './wait-until.js';

export interface TestCert {
  TLS_CERT_FILE: string;
  TLS_KEY_FILE: string;
  /** The certificate as PEM, for clients to trust. */
  ca: string;
}

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, valid for a day, written into `dir`. */
export function selfSignedCert(dir: string): TestCert {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' }); // prettier-ignore
  return { TLS_CERT_FILE: cert, TLS_KEY_FILE: key, ca: readFileSync(cert, 'utf8') };
}

/** Collects the events of an SSE byte stream, parsed as a browser's EventSource would. */
export function sseCollector(): { events: SseEvent[]; feed(chunk: string): void } {
  const events: SseEvent[] = [];
  const parser = createParser({ onEvent: (m) => events.push({ id: m.id, event: m.event ?? 'message', data: m.data }) });
  return { events, feed: (chunk) => parser.feed(chunk) };
}

/** Resolves once `events` holds `count`; rejects after `timeoutMs`. */
export async function waitForEvents(events: SseEvent[], count: number, timeoutMs = 20_000): Promise<SseEvent[]> {
  const arrived = () => {
    if (events.length < count) throw new Error(`got ${events.length} of ${count} events`);
  };
  await waitUntil(arrived, `${count} events arrived`, timeoutMs);
  return events;
}

/** One HTTP/2 connection, as a browser holds for every tab of an origin. */
export async function h2Connect(url: string, ca: string): Promise<ClientHttp2Session> {
  const session = connect(url, { ca });
  session.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  return session;
}

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, or the text of another content type. */
  body: unknown;
}

/**
 * A request on an HTTP/2 session with a bearer key and, when given, a JSON body. Like browsers and
 * curl it sends content-length with a body (HTTP/2 makes it optional; koa's body parsing needs it).
 */
export function h2Call(
  session: ClientHttp2Session,
  method: string,
  path: string,
  key: string,
  body?: unknown,
): Promise<H2Answer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': method,
      ':path': path,
      authorization: `Bearer ${key}`,
      ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }),
    });
    let headers: IncomingHttpHeaders = {};
    let text = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => (headers = h));
    stream.on('data', (chunk: string) => (text += chunk));
    stream.on('end', () => {
      const json = String(headers['content-type']).startsWith('application/json');
      resolve({ status: Number(headers[':status']), headers, body: json ? JSON.parse(text) : text });
    });
    stream.on('error', reject);
    stream.end(payload);
  });
}

/** `POST /v1/users/:userId/messages`; the message id. */
export async function h2Enqueue(session: ClientHttp2Session, apiKey: string, userId: string, data: unknown) {
  const answer = await h2Call(session, 'POST', `/v1/users/${userId}/messages`, apiKey, { data });
  if (answer.status !== 201) throw new Error(`enqueue ${answer.status}: ${JSON.stringify(answer.body)}`);
  return (answer.body as { id: string }).id;
}

/** `POST /v1/tokens`; the stream token. */
export async function h2Token(session: ClientHttp2Session, apiKey: string, userId: string): Promise<string> {
  const answer = await h2Call(session, 'POST', '/v1/tokens', apiKey, { userId });
  if (answer.status !== 201) throw new Error(`token ${answer.status}: ${JSON.stringify(answer.body)}`);
  return (answer.body as { token: string }).token;
}

export interface H2Sse {
  status: number;
  headers: IncomingHttpHeaders;
  events: SseEvent[];
  waitFor(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves with the RST_STREAM code once the stream has closed (0, NO_ERROR: ended cleanly). */
  closed: Promise<number>;
  stream: ClientHttp2Stream;
}

/** `GET /v1/stream` as one stream of an HTTP/2 session. */
export async function h2Sse(session: ClientHttp2Session, token: string): Promise<H2Sse> {
  const path = `/v1/stream?token=${encodeURIComponent(token)}`;
  const stream = session.request({ ':path': path, accept: 'text/event-stream' });
  stream.end();
  const { events, feed } = sseCollector();
  stream.setEncoding('utf8');
  stream.on('data', feed);
  stream.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => stream.on('close', () => resolve(stream.rstCode ?? 0)));
  const headers = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error('stream closed before its response')));
  });
  return {
    status: Number(headers[':status']),
    headers,
    events,
    closed,
    stream,
    waitFor: (count, timeoutMs) => waitForEvents(events, count, timeoutMs),
  };
}
