import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import type { Socket } from 'node:net';
import { ConfigError, type Config } from '../config.js';

/** A Koa `app.callback()`: it takes HTTP/1.1 and HTTP/2 compatibility requests alike. */
export type RequestHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => unknown;

export interface TlsFiles {
  /** PEM certificate chain, leaf first. */
  cert: Buffer;
  /** PEM private key. */
  key: Buffer;
}

/**
 * The HTTP server of a node, plain or TLS, with the two connection sweeps a
 * graceful close needs, whichever protocol the connections speak.
 */
export interface WebServer {
  readonly server: Server | Http2SecureServer;
  /** The scheme of the node's URL. */
  readonly protocol: 'http' | 'https';
  /**
   * Closes HTTP/1.1 connections with no request under way, and asks every
   * HTTP/2 session to end (GOAWAY) once its open streams have. Safe to repeat.
   */
  closeIdle(): void;
  /** Destroys every connection left, busy or not. */
  closeAll(): void;
}

/** How long a client may be slow, and how many may connect: the HTTP_* settings. */
export interface ServerLimits {
  /** All headers of a request within this long, ms, or 408 and the connection is closed. */
  headersTimeoutMs: number;
  /** The whole request (headers and body) within this long, ms. A response may last longer: a stream does. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long, ms. */
  keepAliveTimeoutMs: number;
  /** Connections at once; one more is closed as soon as it is accepted. */
  maxConnections: number;
}

export function serverLimits(config: Config): ServerLimits {
  return {
    headersTimeoutMs: config.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: config.HTTP_REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    maxConnections: config.HTTP_MAX_CONNECTIONS,
  };
}

/**
 * Node checks the two request timeouts on a timer (`connectionsCheckingInterval`, 30 s by
 * default), so a client is cut between the timeout and the timeout plus this period: a tenth of
 * the shorter timeout, at most a second. The check walks only connections with a request still
 * arriving: once a request is received (an event stream's GET at once), it is off the list, so
 * requestTimeout never cuts a long response (Node 20, lib/_http_server.js checkConnections).
 */
function checkingIntervalMs(limits: ServerLimits): number {
  return Math.max(50, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10)));
}

/** Reads TLS_CERT_FILE and TLS_KEY_FILE; undefined when TLS is off. */
export function readTlsFiles(config: Pick<Config, 'TLS_CERT_FILE' | 'TLS_KEY_FILE'>): TlsFiles | undefined {
  if (config.TLS_CERT_FILE === undefined || config.TLS_KEY_FILE === undefined) return undefined;
  const read = (name: 'TLS_CERT_FILE' | 'TLS_KEY_FILE', path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${name}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return { cert: read('TLS_CERT_FILE', config.TLS_CERT_FILE), key: read('TLS_KEY_FILE', config.TLS_KEY_FILE) };
}

/**
 * Without `tls`, a plain HTTP/1.1 server. With it, HTTPS speaking HTTP/2, and
 * HTTP/1.1 to clients that do not offer h2 in ALPN (curl --http1.1, old
 * proxies). Browsers speak HTTP/2 only over TLS, and only HTTP/2 lets one
 * origin hold more than 6 streams (tabs) at once.
 */
export function createWebServer(handler: RequestHandler, tls?: TlsFiles, limits?: ServerLimits): WebServer {
  const timeouts =
    limits === undefined
      ? {}
      : {
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          connectionsCheckingInterval: checkingIntervalMs(limits),
        };
  if (tls === undefined) {
    const server = createServer(timeouts, handler);
    if (limits !== undefined) server.maxConnections = limits.maxConnections;
    return {
      server,
      protocol: 'http',
      closeIdle: () => server.closeIdleConnections(),
      closeAll: () => server.closeAllConnections(),
    };
  }

  let server: Http2SecureServer;
  try {
    server = createSecureServer(
      {
        cert: tls.cert,
        key: tls.key,
        allowHTTP1: true,
        // A client that connects and never finishes the TLS handshake is a slow-header client too.
        ...(limits === undefined ? {} : { handshakeTimeout: limits.headersTimeoutMs }),
      },
      handler,
    );
  } catch (err) {
    // A key that does not match the certificate, or a file that is not PEM.
    throw new ConfigError(`TLS_CERT_FILE/TLS_KEY_FILE: ${(err as Error).message}`);
  }
  if (limits !== undefined) {
    // Node 20's Http2SecureServer applies these to its HTTP/1.1 connections (allowHTTP1) as
    // http.Server does; @types/node does not declare them on it.
    Object.assign(server, timeouts);
    server.maxConnections = limits.maxConnections;
  }
  // Node's Http2SecureServer owns no list of its sessions, and has no closeAllConnections.
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Node 20 has it for the HTTP/1.1 connections of allowHTTP1; @types/node does not declare it.
  const http1 = server as Http2SecureServer & Partial<Pick<Server, 'closeIdleConnections'>>;

  return {
    server,
    protocol: 'https',
    closeIdle() {
      for (const session of sessions) session.close();
      http1.closeIdleConnections?.();
    },
    closeAll() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}
