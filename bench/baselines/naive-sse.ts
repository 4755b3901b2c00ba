import http from 'node:http';

/*
 * The naive baseline of `npm run bench:peers`: the SSE server of the classic
 * tutorials. A plain node:http server, an in-memory array of pending frames per
 * user, one `setInterval` that drains every array to the user's open
 * responses. No durability (a restart loses everything), no acks (POST
 * /v1/acks is accepted and ignored), no auth (the "token" is the user id).
 * The routes have postbox's shape so the load generator drives both alike.
 *
 * Run: `node --import tsx bench/baselines/naive-sse.ts --port 0 [--interval-ms 50]`;
 * it prints `listening <port>` on stdout once it accepts connections.
 */

/** Options of the naive server. */
export interface NaiveOptions {
  /** Port on 127.0.0.1; 0 picks a free one. @defaultValue 0 */
  port?: number;
  /** How often the pending arrays are drained, ms. @defaultValue 50 */
  intervalMs?: number;
}

export interface NaiveServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the naive SSE server on 127.0.0.1. */
export function createNaiveSseServer(options: NaiveOptions = {}): Promise<NaiveServer> {
  const intervalMs = options.intervalMs ?? 50;
  /** Open responses per user. */
  const streams = new Map<string, Set<http.ServerResponse>>();
  /** Frames waiting for the next drain, per user; a user is deleted once drained. */
  const pending = new Map<string, string[]>();
  let nextId = 1;

  const drain = setInterval(() => {
    for (const [userId, frames] of pending) {
      const open = streams.get(userId);
      // Nobody listening: keep the frames for when the user connects (in memory only).
      if (open === undefined || open.size === 0) continue;
      const chunk = frames.join('');
      for (const res of open) res.write(chunk);
      pending.delete(userId);
    }
  }, intervalMs);

  const enqueue = (userId: string, data: unknown): number => {
    const id = nextId++;
    const frame = `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
    const frames = pending.get(userId);
    if (frames === undefined) pending.set(userId, [frame]);
    else frames.push(frame);
    return id;
  };

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const readJson = (req: http.IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      req.on('error', reject);
    });

  const openStream = (userId: string, req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    let open = streams.get(userId);
    if (open === undefined) {
      open = new Set();
      streams.set(userId, open);
    }
    open.add(res);
    req.on('close', () => {
      open.delete(res);
      if (open.size === 0) streams.delete(userId);
    });
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/v1/stream') {
      openStream(url.searchParams.get('token') ?? '', req, res);
      return;
    }
    if (req.method === 'POST' && path === '/v1/acks') {
      // No acks in this design: drain the body and answer, nothing else.
      req.resume();
      req.on('end', () => json(res, 200, { acked: 0 }));
      return;
    }
    if (req.method === 'POST' && path === '/v1/tokens') {
      const body = (await readJson(req)) as { userId?: string };
      json(res, 201, { token: body.userId ?? '' });
      return;
    }
    if (req.method === 'POST' && path === '/v1/messages') {
      const body = (await readJson(req)) as { messages?: Array<{ userId: string; data: unknown }> };
      json(res, 201, { ids: (body.messages ?? []).map((m) => String(enqueue(m.userId, m.data))) });
      return;
    }
    const single = /^\/v1\/users\/([^/]+)\/messages$/.exec(path);
    if (req.method === 'POST' && single?.[1] !== undefined) {
      const body = (await readJson(req)) as { data?: unknown };
      json(res, 201, { id: String(enqueue(decodeURIComponent(single[1]), body.data)) });
      return;
    }
    if (req.method === 'GET' && path === '/readyz') {
      json(res, 200, { ok: true });
      return;
    }
    json(res, 404, { error: 'not found' });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => json(res, 400, { error: 'bad request' }));
  });
  // Idle SSE responses must outlive node's default request and keep-alive timeouts.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            clearInterval(drain);
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = await createNaiveSseServer({
    port: Number(argValue('--port') ?? 0),
    intervalMs: Number(argValue('--interval-ms') ?? 50),
  });
  process.stdout.write(`listening ${server.port}\n`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
