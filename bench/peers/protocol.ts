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
}

export type Command =
  | { cmd: 'init'; target: TargetSpec; index: number; localAddress: string }
  /** Issues a stream token per user (postbox dialect); kept for `open`. */
  | { cmd: 'tokens'; users: string[]; concurrency: number }
  /** Opens one SSE stream per user on `nodes[node]` (default 0), `concurrency` handshakes at a time. */
  | { cmd: 'open'; users: string[]; concurrency: number; node?: number }
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
