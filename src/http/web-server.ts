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
export function createWebServer(handler: RequestHandler, tls?: TlsFiles): WebServer {
  if (tls === undefined) {
    const server = createServer(handler);
    return {
      server,
      protocol: 'http',
      closeIdle: () => server.closeIdleConnections(),
      closeAll: () => server.closeAllConnections(),
    };
  }

  let server: Http2SecureServer;
  try {
    server = createSecureServer({ cert: tls.cert, key: tls.key, allowHTTP1: true }, handler);
  } catch (err) {
    // A key that does not match the certificate, or a file that is not PEM.
    throw new ConfigError(`TLS_CERT_FILE/TLS_KEY_FILE: ${(err as Error).message}`);
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
