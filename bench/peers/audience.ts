import { createAckBatcher, type AckBatcher } from '../../src/client/postbox.js';
import type { Http } from './http.js';
import type { TargetSpec } from './protocol.js';
import { createStreamOpener, type OpenedStream } from './stream-open.js';

/*
 * The SSE streams one generator holds: opened from its source address
 * (stream-open.ts: HTTP/1.1, a connection each, or HTTP/2, many to one),
 * parsed by hand (cheaper than a general parser, so the generator's CPU
 * stays small), acked through postbox's own client batcher (at most every 100 ms or
 * 100 ids, POST /v1/acks with the stream token as Bearer), and tallied per
 * epoch: distinct messages, duplicates, enqueue → receive latency. A user
 * may hold a stream on each node of a target (tabs); like the client, a tab
 * does not ack what another one acked first (`postbox.acked`).
 */

/** Milliseconds on CLOCK_MONOTONIC, which every process on the machine shares. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

export interface Tally {
  received: number;
  duplicates: number;
  samples: number[];
}

export interface Audience {
  /**
   * Opens `userId`'s stream with `token` on node `node` of the target; resolves once the server
   * answered 200, rejects with an OpenError (stream-open.ts) otherwise, or when no answer came
   * within `timeoutMs` (default 30 s).
   */
  open(userId: string, token: string, node: number, timeoutMs?: number): Promise<void>;
  /** The tally of one epoch; `take` hands over its latency samples and forgets them. */
  tally(epoch: number, take: boolean): Tally;
  readonly counters: { acked: number; ackRequests: number; ackFailures: number; streamsLost: number; badFrames: number };
  /** Streams open now. */
  readonly size: number;
  close(): void;
}

/** `ackers[i]` acks for the streams on node i of the target (`target.nodes`, or just `baseUrl`). */
export function createAudience(target: TargetSpec, localAddress: string, ackers: readonly Http[]): Audience {
  const streams = new Map<string, { close(): void }>();
  const counters = { acked: 0, ackRequests: 0, ackFailures: 0, streamsLost: 0, badFrames: 0 };
  const epochs = new Map<number, { seen: Set<string>; duplicates: number; samples: number[] }>();
  const epochOf = (epoch: number) => {
    let e = epochs.get(epoch);
    if (e === undefined) {
      e = { seen: new Set(), duplicates: 0, samples: [] };
      epochs.set(epoch, e);
    }
    return e;
  };

  /** Data is `<send ms>|<epoch>|<generator>|<seq>|xxx…`; postbox-dialect servers send it JSON-quoted. */
  const onData = (raw: string) => {
    const text = raw.startsWith('"') ? raw.slice(1, -1) : raw;
    const [sent, epoch, sender, seq] = text.split('|');
    if (seq === undefined) {
      counters.badFrames += 1;
      return;
    }
    const e = epochOf(Number(epoch));
    const key = `${sender}|${seq}`;
    if (e.seen.has(key)) {
      e.duplicates += 1;
      return;
    }
    e.seen.add(key);
    e.samples.push(nowMs() - Number(sent));
  };

  const postAcks = async (acker: Http, token: string, ids: string[]) => {
    counters.ackRequests += 1;
    const res = await acker.request('POST', '/v1/acks', JSON.stringify({ ids }), {
      'content-type': 'application/json',
      authorization: `Bearer ${token}`,
    });
    if (res.status !== 200) {
      counters.ackFailures += ids.length;
      throw new Error(`POST /v1/acks → ${res.status}`);
    }
    counters.acked += (JSON.parse(res.body) as { acked: number }).acked;
  };

  const openers = (target.nodes ?? [target.baseUrl]).map((base) => createStreamOpener(target, localAddress, base));
  const open = async (userId: string, token: string, node: number, timeoutMs = 30_000): Promise<void> => {
    const path = target.dialect === 'nchan' ? `/sub/${userId}` : `/v1/stream?token=${encodeURIComponent(token)}`;
    const acker = ackers[node];
    const opener = openers[node];
    if (acker === undefined || opener === undefined) throw new Error(`no node ${node}`);
    const batcher: AckBatcher | undefined = target.acks ? createAckBatcher({ send: (ids) => postAcks(acker, token, ids) }) : undefined;
    /** Ids another tab acked before this one got them (`postbox.acked`): not acked again. */
    const dismissed = new Set<string>();
    const key = `${node} ${userId}`;
    let stream: OpenedStream;
    try {
      stream = await opener.open(path, timeoutMs);
    } catch (err) {
      void batcher?.close();
      throw err;
    }
    streams.set(key, {
      close() {
        void batcher?.close();
        stream.close();
      },
    });
    let buffer = '';
    const feed = (chunk: string) => {
      buffer += chunk;
      // A frame ends at a blank line (WHATWG HTML §9.2.6); every target here ends lines with a bare LF.
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id: string | undefined;
        let data: string | undefined;
        let event: string | undefined;
        for (const line of frame.split('\n')) {
          if (line.startsWith('data:')) data = line.slice(line.startsWith('data: ') ? 6 : 5);
          else if (line.startsWith('id:')) id = line.slice(line.startsWith('id: ') ? 4 : 3);
          else if (line.startsWith('event:')) event = line.slice(line.startsWith('event: ') ? 7 : 6);
        }
        if (data === undefined) continue; // retry:, comments, pings
        if (event?.startsWith('postbox.')) {
          // postbox's control events carry no message; `acked` names ids another tab acked.
          if (event === 'postbox.acked') for (const acked of (JSON.parse(data) as { ids: string[] }).ids) dismissed.add(acked);
          continue;
        }
        onData(data);
        if (id !== undefined && !dismissed.delete(id)) batcher?.add(id);
      }
    };
    // Ended from the other side (or reset): lost, unless this side closed it (close() forgets it first).
    stream.read(feed, () => {
      if (streams.delete(key)) counters.streamsLost += 1;
    });
  };

  return {
    open,
    tally(epoch, take) {
      const e = epochOf(epoch);
      const samples = take ? e.samples : [];
      if (take) e.samples = [];
      return { received: e.seen.size, duplicates: e.duplicates, samples };
    },
    counters,
    get size() {
      return streams.size;
    },
    close() {
      const all = [...streams.values()];
      // Cleared first, so these closes do not count as lost streams.
      streams.clear();
      for (const s of all) s.close();
      for (const opener of openers) opener.close();
    },
  };
}
