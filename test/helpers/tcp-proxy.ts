import { createServer, connect, type Server, type Socket } from 'node:net';

/** Which way bytes go: `up` from the client to the target (commands), `down` back (replies). */
export type Direction = 'up' | 'down';

/**
 * A TCP proxy on loopback in front of a real server (a redis-server), that a test can make
 * misbehave the way networks do: hold bytes without closing anything (a stall: the peer looks
 * alive and says nothing), let only some bytes through, cut every connection, or refuse new ones.
 */
export interface TcpProxy {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Connections open through it now. */
  readonly connections: number;
  /**
   * Holds bytes going `direction` (both when not given), after letting `afterBytes` more through
   * on each connection (0 when not given): nothing is closed, nothing is lost, they wait until
   * `resume`. New connections are held from their first byte.
   */
  stall(direction?: Direction, afterBytes?: number): void;
  /** What is held going `direction` now, as latin1 text (to wait until a command is in the stall). */
  held(direction: Direction): string;
  /** Passes on everything held, and whatever comes next. */
  resume(): void;
  /** Destroys every connection through it now; bytes it held are gone. */
  drop(): void;
  /** While on, a new connection is closed as soon as it is accepted, as a dead host's would be. */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

interface Pipe {
  from: Socket;
  to: Socket;
  direction: Direction;
  held: Buffer[];
  /** Bytes it may still pass before it holds; undefined: not stalled. */
  allowance: number | undefined;
}

export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const pipes = new Set<Pipe>();
  const sockets = new Set<Socket>();
  /** Which directions are stalled: a new connection's pipes start held. */
  const stalled: Record<Direction, boolean> = { up: false, down: false };
  let refusing = false;

  function pass(pipe: Pipe, chunk: Buffer): void {
    const left = pipe.allowance;
    if (left === undefined) {
      pipe.to.write(chunk);
      return;
    }
    if (pipe.held.length > 0 || left <= 0) {
      pipe.held.push(chunk);
      return;
    }
    const through = chunk.subarray(0, left);
    pipe.allowance = left - through.length;
    pipe.to.write(through);
    if (through.length < chunk.length) pipe.held.push(chunk.subarray(through.length));
  }

  function link(from: Socket, to: Socket, direction: Direction): void {
    const pipe: Pipe = { from, to, direction, held: [], allowance: stalled[direction] ? 0 : undefined };
    pipes.add(pipe);
    from.on('data', (chunk: Buffer) => pass(pipe, chunk));
    from.on('close', () => {
      pipes.delete(pipe);
      to.destroy();
    });
    from.on('error', () => to.destroy());
  }

  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host ?? '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.once('close', () => sockets.delete(client));
    upstream.once('close', () => sockets.delete(upstream));
    link(client, upstream, 'up');
    link(upstream, client, 'down');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get connections() {
      return sockets.size / 2;
    },
    stall(direction, afterBytes = 0) {
      for (const d of direction === undefined ? (['up', 'down'] as const) : [direction]) stalled[d] = true;
      for (const pipe of pipes) if (direction === undefined || pipe.direction === direction) pipe.allowance = afterBytes;
    },
    held(direction) {
      return [...pipes]
        .filter((p) => p.direction === direction)
        .map((p) => Buffer.concat(p.held).toString('latin1'))
        .join('');
    },
    resume() {
      stalled.up = false;
      stalled.down = false;
      for (const pipe of pipes) {
        pipe.allowance = undefined;
        for (const chunk of pipe.held.splice(0)) pipe.to.write(chunk);
      }
    },
    drop() {
      for (const pipe of pipes) pipe.held.length = 0;
      for (const socket of [...sockets]) socket.destroy();
    },
    refuse(on) {
      refusing = on;
    },
    async close() {
      refusing = true;
      for (const socket of [...sockets]) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
