import { connect, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TargetSpec } from './protocol.js';

/*
 * How a generator opens an SSE stream: HTTP/1.1 written by hand on a socket
 * of its own, or a stream on a shared HTTP/2 connection. node:http's client
 * cost the generator as much CPU per open as the server spent, on a machine
 * the two share; by hand it is a connect, one write and a look at the status line.
 */

/** A stream that did not open; `kind` is what the bench counts it under (`429 PB_ERR_…`, `ECONNRESET`, `timeout`). */
export class OpenError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
  }
}

/** An open stream (the server answered 200). */
export interface OpenedStream {
  /** Hands the body text to `feed` from now on (what came already first); `ended` once the stream is gone. */
  read(feed: (text: string) => void, ended: () => void): void;
  close(): void;
}

export interface StreamOpener {
  /** GET `path` as an event stream; rejects with an OpenError unless it answers 200 within `timeoutMs`. */
  open(path: string, timeoutMs: number): Promise<OpenedStream>;
  /** Ends the HTTP/2 connections (the streams' own `close` ends each HTTP/1.1 one). */
  close(): void;
}

/**
 * Undoes HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) of text fed in pieces, one character a
 * byte (latin1); chunk extensions and trailers are skipped.
 */
export function createDechunker(): (text: string) => string {
  let buffer = '';
  /** Characters of the current chunk's data still to come. */
  let left = 0;
  /** The CRLF after a chunk's data, still to skip. */
  let skip = 0;
  return (text) => {
    buffer += text;
    let out = '';
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buffer.length);
        buffer = buffer.slice(n);
        skip -= n;
        if (skip > 0) break;
      }
      if (left > 0) {
        const n = Math.min(left, buffer.length);
        out += buffer.slice(0, n);
        buffer = buffer.slice(n);
        left -= n;
        if (left > 0) break;
        skip = 2;
        continue;
      }
      const line = buffer.indexOf('\r\n');
      if (line < 0) break;
      // parseInt stops at a chunk extension's ';'. A 0-size chunk is the last one: what follows is trailers.
      left = parseInt(buffer.slice(0, line), 16) || 0;
      buffer = buffer.slice(line + 2);
      if (left === 0) {
        buffer = '';
        break;
      }
    }
    return out;
  };
}

/** The error code of a postbox error body (`{"error":{"code":"PB_ERR_…"}}`), for the failure's kind. */
function refusal(status: number, body: string, path: string): OpenError {
  const code = /"code":"([A-Z_]+)"/.exec(body)?.[1];
  return new OpenError(code === undefined ? String(status) : `${status} ${code}`, `GET ${path} → ${status}`);
}

/** Body text that arrives before anyone reads it waits here; so does the end. */
function bodyOf(close: () => void): OpenedStream & { push(text: string): void; end(): void } {
  let pending = '';
  let gone = false;
  let feed: ((text: string) => void) | undefined;
  let ended: (() => void) | undefined;
  return {
    push(text) {
      if (feed === undefined) pending += text;
      else feed(text);
    },
    end() {
      if (gone) return;
      gone = true;
      ended?.();
    },
    read(f, e) {
      feed = f;
      ended = e;
      if (pending !== '') f(pending);
      pending = '';
      if (gone) e();
    },
    close,
  };
}

/** Opens streams on `baseUrl` (one node of the target; by default its `baseUrl`). */
export function createStreamOpener(target: TargetSpec, localAddress: string, baseUrl = target.baseUrl): StreamOpener {
  const origin = new URL(baseUrl);
  const sessions: ClientHttp2Session[] = [];
  let onCurrent = 0;

  /** The HTTP/2 connection the next stream goes on: a new one every `streamsPerConnection` streams. */
  const h2session = (h2: NonNullable<TargetSpec['http2']>): ClientHttp2Session => {
    const last = sessions.at(-1);
    if (last !== undefined && !last.closed && !last.destroyed && onCurrent < h2.streamsPerConnection) {
      onCurrent += 1;
      return last;
    }
    // The socket is ours so it leaves from this generator's source address (ALPN h2, as a browser asks).
    const session = connect(baseUrl, {
      createConnection: () =>
        tlsConnect({
          socket: netConnect({ host: origin.hostname, port: Number(origin.port), localAddress }),
          ca: h2.ca,
          ALPNProtocols: ['h2'],
        }),
    });
    session.on('error', () => undefined);
    sessions.push(session);
    onCurrent = 1;
    return session;
  };

  const open = (path: string, timeoutMs: number): Promise<OpenedStream> =>
    new Promise((resolve, reject) => {
      const shown = path.split('?')[0] ?? path; // no token in an error message
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const fail = (err: Error) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(err);
      };
      const ok = (stream: OpenedStream) => {
        clearTimeout(timer);
        settled = true;
        resolve(stream);
      };
      const failed = (err: NodeJS.ErrnoException) => fail(new OpenError(err.code ?? err.message, `GET ${shown}: ${err.message}`));

      const h2 = target.http2;
      if (h2 !== undefined) {
        const stream = h2session(h2).request({ ':path': path, accept: 'text/event-stream' });
        timer = setTimeout(() => {
          fail(new OpenError('timeout', `GET ${shown}: no answer in ${timeoutMs} ms`));
          stream.close();
        }, timeoutMs);
        stream.setEncoding('utf8');
        stream.on('response', (headers) => {
          const status = Number(headers[':status']);
          if (status !== 200) {
            let text = '';
            stream.on('data', (c: string) => (text = (text + c).slice(0, 2_000)));
            stream.on('end', () => fail(refusal(status, text, shown)));
            return;
          }
          const body = bodyOf(() => stream.close());
          stream.on('data', body.push);
          stream.on('close', body.end);
          ok(body);
        });
        stream.on('error', failed);
        stream.end();
        return;
      }

      // Latin-1, so a character is a byte for the chunked framing; the bench's payloads are ASCII.
      const socket = netConnect({ host: origin.hostname, port: Number(origin.port), localAddress });
      socket.setNoDelay(true);
      socket.setEncoding('latin1');
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${origin.host}\r\nAccept: text/event-stream\r\n\r\n`);
      timer = setTimeout(() => {
        fail(new OpenError('timeout', `GET ${shown}: no answer in ${timeoutMs} ms`));
        socket.destroy();
      }, timeoutMs);
      let head = '';
      let push: ((text: string) => void) | undefined;
      socket.on('data', (chunk: string) => {
        if (push !== undefined) return push(chunk);
        head += chunk;
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = Number(head.slice(9, 12));
        const rest = head.slice(end + 4);
        if (status !== 200) {
          // Error bodies are small: what came with the headers names the error.
          fail(refusal(status, rest, shown));
          socket.destroy();
          return;
        }
        const body = bodyOf(() => socket.destroy());
        const dechunk = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head.slice(0, end)) ? createDechunker() : undefined;
        push = dechunk === undefined ? body.push : (text) => body.push(dechunk(text));
        socket.on('close', body.end);
        head = '';
        push(rest);
        ok(body);
      });
      socket.on('error', failed);
      socket.on('close', () => fail(new OpenError('closed', `GET ${shown}: closed before an answer`)));
    });

  return {
    open,
    close() {
      for (const session of sessions.splice(0)) session.destroy();
      onCurrent = 0;
    },
  };
}
