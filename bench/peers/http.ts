import type http from 'node:http';
import { keepAliveAgent, send } from '../lib.js';

/* A keep-alive HTTP/1.1 client bound to one source address, for the load generators. */

export interface Http {
  request(method: string, path: string, body: string, headers: http.OutgoingHttpHeaders): Promise<{ status: number; body: string }>;
  close(): void;
}

export interface HttpOptions {
  /** Source address of every connection, e.g. 127.0.0.3. */
  localAddress: string;
  /** Connections kept open; requests beyond it wait in the agent's queue. */
  maxSockets: number;
  /** A request unanswered this long fails, ms. @defaultValue 15000 */
  timeoutMs?: number;
}

export function createHttp(baseUrl: string, options: HttpOptions): Http {
  const url = new URL(baseUrl);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const agent = keepAliveAgent(options.maxSockets);
  return {
    request(method, path, body, headers) {
      const { localAddress } = options;
      const sent = { ...headers, 'content-length': Buffer.byteLength(body) };
      return send({ host: url.hostname, port: Number(url.port), localAddress, method, path, agent, headers: sent }, body, timeoutMs);
    },
    close() {
      agent.destroy();
    },
  };
}
