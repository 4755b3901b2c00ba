import { z } from 'zod';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import { GROUP, enqueuedAtOf, type Keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { withScripts, type ScriptedRedis } from '../scripts.js';
import type { IndexEntry, UsersIndex } from '../users-index.js';

/** One user's queue as the admin listing shows it. */
export interface QueueCounts {
  userId: string;
  /** Messages not yet written to a stream (past their TTL excluded). */
  waiting: number;
  /** Written, not acked (past their TTL excluded: the user's queue view and the totals count those). */
  inflight: number;
  dead: number;
  /** Age of the oldest message not yet acked (waiting or in flight) nor expired, ms; null when there is none. */
  oldestAgeMs: number | null;
}

/**
 * `index`: the order users first got messages, paged by a keyset cursor: stable,
 * cheap, complete for any number of users. `backlog` (waiting + in flight, then
 * dead letters, largest first) and `age` (oldest unacked message first) sort a
 * bounded scan; see `list`.
 */
export type QueueSort = 'index' | 'backlog' | 'age';

export interface QueuePage {
  queues: QueueCounts[];
  /** Pass as `cursor` for the next page; null on the last one. */
  nextCursor: string | null;
  sort: QueueSort;
  /** Sorted listings only: the index held more users than one scan reads, so the sort covers the first ones. */
  truncated: boolean;
}

export interface QueueTotals {
  /** Users with a backlog or dead letters. */
  users: number;
  waiting: number;
  inflight: number;
  /** Past their TTL, not swept yet (not in `waiting` nor `inflight`). */
  expired: number;
  dead: number;
  /** More users than ADMIN_SCAN_MAX_USERS: the totals cover the first ones of the index. */
  truncated: boolean;
}

/** Index entries read per round trip. */
const CHUNK = 500;

const cursorSchema = z.discriminatedUnion('o', [
  z.strictObject({ o: z.literal('index'), s: z.string().regex(/^-?\d{1,16}(\.\d+)?$/), m: z.string().max(256) }),
  z.strictObject({ o: z.enum(['backlog', 'age']), n: z.number().int().min(0).max(10_000_000) }),
]);
type Cursor = z.infer<typeof cursorSchema>;

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decodeCursor(text: string, sort: QueueSort): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const result = cursorSchema.safeParse(parsed);
  if (!result.success) throw new AppError('PB_ERR_VALIDATION', 'cursor: not a cursor returned by this API');
  if (result.data.o !== sort) {
    throw new AppError('PB_ERR_VALIDATION', `cursor: it belongs to sort=${result.data.o}, not sort=${sort}`);
  }
  return result.data;
}

export interface QueueListing {
  list(request: { sort: QueueSort; limit: number; cursor?: string | undefined }): Promise<QueuePage>;
  totals(): Promise<QueueTotals>;
}

/**
 * Listings over the users index, and totals. Users with nothing queued are
 * skipped, not removed: they leave the index only when their keys are gone
 * (src/queue/users-index.ts), so every user keeps its place in `sort=index`.
 */
export function createQueueListing(deps: {
  redis: RedisClient;
  clock: Clock;
  keys: Keys;
  index: UsersIndex;
  /** Index entries one sorted listing or totals request reads at most (ADMIN_SCAN_MAX_USERS). */
  scanMaxUsers: number;
}): QueueListing {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { clock, keys, index, scanMaxUsers } = deps;
  const indexPage = (after: IndexEntry | undefined, count: number) => index.page(after, count);

  /**
   * Counts of these users in one round trip. `row` is undefined for a user with nothing that
   * will be delivered and no dead letters: messages past their TTL alone are not a backlog.
   */
  async function countsOf(userIds: string[]): Promise<Array<{ row: QueueCounts | undefined; expired: number }>> {
    if (userIds.length === 0) return [];
    const now = clock.now();
    const replies = await Promise.all(userIds.map((u) => readCounts(redis, keys, u, now)));
    return userIds.map((userId, i) => {
      const c = replies[i] as Counts;
      if (c.waiting + c.inflight === 0 && c.dead === 0) return { row: undefined, expired: c.expired };
      const oldestAgeMs = c.oldest === '' ? null : Math.max(0, now - enqueuedAtOf(c.oldest));
      return { row: { userId, waiting: c.waiting, inflight: c.inflight, dead: c.dead, oldestAgeMs }, expired: c.expired };
    });
  }

  /** Every user with something queued among the first `scanMaxUsers` of the index, and their expired messages. */
  async function scan(): Promise<{ rows: QueueCounts[]; expired: number; truncated: boolean }> {
    const rows: QueueCounts[] = [];
    let expired = 0;
    let after: IndexEntry | undefined;
    let scanned = 0;
    for (;;) {
      const want = Math.min(CHUNK, scanMaxUsers - scanned);
      if (want <= 0) return { rows, expired, truncated: (await indexPage(after, 1)).length > 0 };
      const entries = await indexPage(after, want);
      for (const c of await countsOf(entries.map((e) => e.userId))) {
        if (c.row !== undefined) rows.push(c.row);
        expired += c.expired;
      }
      scanned += entries.length;
      if (entries.length < want) return { rows, expired, truncated: false };
      after = entries[entries.length - 1];
    }
  }

  async function listByIndex(limit: number, cursor: Cursor | undefined): Promise<QueuePage> {
    let after: IndexEntry | undefined = cursor?.o === 'index' ? { score: cursor.s, userId: cursor.m } : undefined;
    const queues: QueueCounts[] = [];
    let scanned = 0;
    // Empty users are skipped, so a page may need several chunks; the scan
    // bound keeps one request's work finite, and a short page with a cursor
    // then just means "keep going".
    while (scanned < scanMaxUsers) {
      const entries = await indexPage(after, Math.min(CHUNK, Math.max(limit - queues.length, 50)));
      if (entries.length === 0) return { queues, nextCursor: null, sort: 'index', truncated: false };
      const counts = await countsOf(entries.map((e) => e.userId));
      for (let i = 0; i < entries.length; i += 1) {
        after = entries[i];
        const c = counts[i]?.row;
        if (c !== undefined) queues.push(c);
        if (queues.length === limit) break;
      }
      scanned += entries.length;
      if (queues.length === limit) break;
    }
    const next = after === undefined ? null : encodeCursor({ o: 'index', s: after.score, m: after.userId });
    return { queues, nextCursor: (await indexPage(after, 1)).length > 0 ? next : null, sort: 'index', truncated: false };
  }

  /**
   * Sorted listings. A true global order by backlog would need a score kept up
   * to date on every enqueue, pop and ack, in another slot than the user's
   * keys (a second write per message, not atomic with it). Instead each
   * request scans up to ADMIN_SCAN_MAX_USERS users of the index (in chunks of
   * one pipelined round trip), sorts them, and pages by offset. Honest
   * consequences: each page is a fresh snapshot, so a user whose backlog
   * changes between two requests can move across the page boundary (shown
   * twice or not at all); and beyond ADMIN_SCAN_MAX_USERS users the order
   * covers only the first ones (`truncated: true`); sort=index pages all.
   */
  async function listSorted(sort: 'backlog' | 'age', limit: number, cursor: Cursor | undefined): Promise<QueuePage> {
    const { rows, truncated } = await scan();
    const backlog = (q: QueueCounts) => q.waiting + q.inflight;
    rows.sort((a, b) => {
      const primary =
        sort === 'backlog' ? backlog(b) - backlog(a) || b.dead - a.dead : (b.oldestAgeMs ?? -1) - (a.oldestAgeMs ?? -1);
      return primary || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
    });
    const offset = cursor?.o === sort ? cursor.n : 0;
    const queues = rows.slice(offset, offset + limit);
    const end = offset + queues.length;
    return { queues, nextCursor: end < rows.length ? encodeCursor({ o: sort, n: end }) : null, sort, truncated };
  }

  return {
    async list({ sort, limit, cursor }) {
      const decoded = cursor === undefined ? undefined : decodeCursor(cursor, sort);
      return sort === 'index' ? listByIndex(limit, decoded) : listSorted(sort, limit, decoded);
    },

    async totals() {
      const { rows, expired, truncated } = await scan();
      const totals: QueueTotals = { users: rows.length, waiting: 0, inflight: 0, expired, dead: 0, truncated };
      for (const r of rows) {
        totals.waiting += r.waiting;
        totals.inflight += r.inflight;
        totals.dead += r.dead;
      }
      return totals;
    },
  };
}

/**
 * Expired ids examined, and entries walked for the oldest one alive, per user and call
 * (admin-counts.lua); join.lua examines as many expired ids for a stream's postbox.counts.
 */
export const EXPIRED_SCAN_MAX = 1000;

/** One user's counts, messages past their TTL apart (they will never be delivered). */
export interface Counts {
  waiting: number;
  inflight: number;
  expired: number;
  dead: number;
  /** The oldest entry neither acked nor expired, '' when none. */
  oldest: string;
}

/** Reads one user's counts (one script call, so one round trip shared by auto-pipelining). */
export async function readCounts(redis: ScriptedRedis, keys: Keys, userId: string, now: number): Promise<Counts> {
  const [length, inflight, dead, oldest, expiredWaiting, expiredInflight] = await redis.pbAdminCounts(
    keys.mailbox(userId),
    keys.dead(userId),
    keys.expiries(userId),
    GROUP,
    now,
    EXPIRED_SCAN_MAX,
  );
  return {
    waiting: Math.max(0, length - inflight - expiredWaiting),
    inflight: Math.max(0, inflight - expiredInflight),
    expired: expiredWaiting + expiredInflight,
    dead,
    oldest,
  };
}
