import http from 'node:http';

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
  // Idle sockets go after 4 s, before a server's 5 s keep-alive timeout can race a request with its FIN.
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxFreeSockets: options.maxSockets,
    timeout: 4_000,
  });
  return {
    request(method, path, body, headers) {
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            host: url.hostname,
            port: Number(url.port),
            localAddress: options.localAddress,
            method,
            path,
            agent,
            headers: { ...headers, 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
