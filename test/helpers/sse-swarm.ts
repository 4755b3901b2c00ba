import { connect, type Socket } from 'node:net';
import { createParser } from 'eventsource-parser';

/** One stream of a swarm: the ids of the message events it got, and how its open went. */
export interface SwarmStream {
  readonly userId: string;
  /** Status of the response, 0 before it came. */
  status: number;
  /** The socket's error, if it had one (ECONNRESET, …). */
  error?: string;
  ids: string[];
  socket: Socket;
  /** Resolves once the response's status line came (or the socket closed first). */
  answered: Promise<void>;
}

/**
 * Many SSE streams on raw sockets, each from its own loopback address (127.x.y.z, so they are
 * many clients, not one), parsed by eventsource-parser. Much lighter than a fetch per stream.
 */
export function openSwarmStream(base: string, userId: string, token: string, index: number): SwarmStream {
  const { port } = new URL(base);
  // 127.1.0.1, 127.1.0.2, …: any address of 127/8 is this host.
  const localAddress = `127.${1 + Math.floor(index / 65_025)}.${Math.floor(index / 255) % 255}.${(index % 255) + 1}`;
  const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress });
  const stream: SwarmStream = { userId, status: 0, ids: [], socket, answered: Promise.resolve() };
  const sse = createParser({
    onEvent(event) {
      if (event.id && !(event.event ?? '').startsWith('postbox.')) stream.ids.push(event.id);
    },
  });
  const decoder = new TextDecoder();
  const parser = { feed: (latin1: string) => sse.feed(decoder.decode(Buffer.from(latin1, 'latin1'), { stream: true })) };
  let head = '';
  let inBody = false;
  let chunked = false;
  // An event stream's body is close-delimited (RFC 9112 §6.3) or, from other servers, in chunked
  // transfer coding (§7.1): `<hex size>\r\n<data>\r\n`.
  let pending = '';
  let left = 0;
  const body = (text: string) => {
    if (!chunked) return parser.feed(text);
    pending += text;
    for (;;) {
      if (left > 0) {
        const take = pending.slice(0, left);
        parser.feed(take);
        left -= take.length;
        pending = pending.slice(take.length);
        if (left > 0) return;
        continue;
      }
      const eol = pending.indexOf('\r\n');
      if (eol < 0) return;
      const line = pending.slice(0, eol);
      pending = pending.slice(eol + 2);
      // The CRLF after a chunk's data is an empty line here.
      if (line !== '') left = parseInt(line, 16) || 0;
    }
  };
  stream.answered = new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    // latin1 keeps one character per byte, so chunk sizes (in bytes) count characters; the
    // SSE text is then decoded as UTF-8 before the parser sees it.
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      if (inBody) {
        body(chunk);
        return;
      }
      head += chunk;
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      stream.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head.slice(0, end));
      inBody = true;
      resolve();
      body(head.slice(end + 4));
    });
  });
  socket.on('error', (err: NodeJS.ErrnoException) => (stream.error = err.code ?? err.message));
  socket.write(`GET /v1/stream?token=${encodeURIComponent(token)} HTTP/1.1\r\nHost: postbox\r\nAccept: text/event-stream\r\n\r\n`);
  return stream;
}
