/* The IPC messages between `npm run bench:peers` and its load-generator processes. */

/** How the generator speaks to a target: postbox's routes, or Nchan's /pub and /sub locations. */
export type Dialect = 'postbox' | 'nchan';

export interface TargetSpec {
  dialect: Dialect;
  /** `http://127.0.0.1:<port>` */
  baseUrl: string;
  /** Producer key for postbox-dialect targets. */
  apiKey: string;
  /** Whether subscribers ack what they receive (postbox's client library does; Nchan has no acks). */
  acks: boolean;
  /**
   * Every node of a target that has several behind one Redis (postbox): a POST goes through a
   * random one, a stream opens on the one its `open` names and acks through it, as a page does.
   * @defaultValue [baseUrl]
   */
  nodes?: string[];
  /** postbox's TOKEN_SECRET: with it the generator signs stream tokens itself instead of asking POST /v1/tokens. */
  tokenSecret?: string;
  /**
   * Streams over HTTP/2 (TLS, `baseUrl` is https://): this many streams share one connection, as a
   * browser's tabs do. Absent: HTTP/1.1, one connection per stream.
   */
  http2?: { ca: string; streamsPerConnection: number };
}

export type Command =
  | { cmd: 'init'; target: TargetSpec; index: number; localAddress: string }
  /**
   * A stream token per user (postbox dialect), kept for `open`: signed here when the target's
   * spec has its `tokenSecret`, else issued by POST /v1/tokens, `concurrency` at a time.
   */
  | { cmd: 'tokens'; users: string[]; concurrency: number }
  /** Opens one SSE stream per user on `nodes[node]` (default 0), `concurrency` handshakes at a time. */
  | { cmd: 'open'; users: string[]; concurrency: number; node?: number }
  /**
   * Opens one SSE stream per user at `rate` per second (0: as fast as `maxInflight` allows), never
   * more than `maxInflight` handshakes unanswered: when that many are, the schedule waits. An
   * open unanswered after `timeoutMs` fails. Failures are counted, not thrown.
   */
  | { cmd: 'openPaced'; users: string[]; rate: number; maxInflight: number; timeoutMs: number }
  /**
   * Open loop: sends single POSTs at `rate`/s for `durationMs` to random
   * `users`, never more than `maxInflight` unanswered; a send that finds the
   * limit reached is counted as not sent.
   */
  | { cmd: 'rate'; epoch: number; users: string[]; rate: number; durationMs: number; maxInflight: number }
  /** Closed loop: `concurrency` workers send POSTs of `batch` messages back to back for `durationMs`. */
  | { cmd: 'closed'; epoch: number; users: string[]; concurrency: number; durationMs: number; batch: number }
  /** Counters; `samples` returns (and forgets) the latency samples of `epoch`. */
  | { cmd: 'stats'; epoch: number; samples: boolean }
  | { cmd: 'close' };

export interface Request {
  id: number;
  command: Command;
}

export interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export interface OpenResult {
  opened: number;
  failed: number;
  firstError?: string;
  ms: number;
}

export interface PacedOpenResult {
  opened: number;
  failed: number;
  /** Failures by kind: `429 PB_ERR_NODE_STREAMS_FULL`, `ECONNRESET`, `timeout`, … */
  errors: Record<string, number>;
  /** CLOCK_MONOTONIC ms of the first request sent and of the last answer. */
  startMs: number;
  endMs: number;
  /** Request sent → 200 received, ms. */
  openMs: { p50: number; p99: number; max: number };
  /** How far the last request was sent behind its schedule, ms (0 when unpaced). */
  behindMs: number;
}

export interface RateResult {
  /** Sends the schedule called for. */
  scheduled: number;
  /** Requests sent. */
  sent: number;
  /** Answered 2xx. */
  accepted: number;
  /** Errors and non-2xx answers. */
  failed: number;
  /** Scheduled sends skipped because `maxInflight` requests were unanswered. */
  notSent: number;
  firstError?: string;
  /** How late the generator sent against its schedule, ms (its own event-loop delay). */
  lagMs: { p50: number; p99: number; max: number };
  /** Request round trip, ms. */
  requestMs: { p50: number; p99: number };
}

export interface ClosedResult {
  /** Messages in answered 2xx requests. */
  messages: number;
  requests: number;
  failed: number;
  firstError?: string;
  /** From the first send to the last answer, s. */
  seconds: number;
}

export interface StatsResult {
  /** Distinct messages of the epoch received. */
  received: number;
  /** Messages of the epoch received again. */
  duplicates: number;
  /** Ids the server said it acked (all epochs). */
  acked: number;
  ackRequests: number;
  ackFailures: number;
  streamsOpen: number;
  /** Streams that ended or failed after opening. */
  streamsLost: number;
  /** Enqueue → receive, ms, when asked for. */
  samples?: number[];
  /** This process's user + system CPU time, s. */
  cpuSeconds: number;
  /** Frames whose data could not be parsed. */
  badFrames: number;
}
