import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { GROUP, createKeys, enqueuedAtOf, type Keys } from './keys.js';
import { scriptedPipeline, withScripts, type ScriptedRedis } from './scripts.js';

export interface AdminQueriesOptions {
  /** Prefix of every key. @defaultValue 'pb' */
  keyPrefix: string;
  /** Retried dead letters stop at this mailbox length. */
  queueMaxLength: number;
  /** Index entries one listing or stats request reads at most (ADMIN_SCAN_MAX_USERS). @defaultValue 10000 */
  scanMaxUsers: number;
}

/** One user's queue as the admin listing shows it. */
export interface QueueCounts {
  userId: string;
  /** Messages not yet written to a stream. */
  waiting: number;
  /** Written, not acked. */
  inflight: number;
  dead: number;
  /** Age of the oldest message not yet acked (waiting or in flight), ms; null when there is none. */
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
  dead: number;
  /** More users than ADMIN_SCAN_MAX_USERS: the totals cover the first ones of the index. */
  truncated: boolean;
}

export interface RetryResult {
  retried: number;
  /** The new event ids of the retried messages, in the order they were queued. */
  ids: string[];
  /** Requested ids that are not among the user's dead letters. */
  notFound: string[];
  /** The mailbox reached QUEUE_MAX_LENGTH; the rest stayed dead letters. */
  queueFull: boolean;
}

export interface AdminQueries {
  readonly keys: Keys;
  list(request: { sort: QueueSort; limit: number; cursor?: string | undefined }): Promise<QueuePage>;
  totals(): Promise<QueueTotals>;
  /** Removes every waiting, in-flight and dead message; undefined for an unknown user. */
  purge(userId: string): Promise<{ waiting: number; inflight: number; dead: number } | undefined>;
  /** Moves dead letters (all, or those with these original event ids) back to the mailbox; undefined for an unknown user. */
  retryDead(userId: string, ids?: string[]): Promise<RetryResult | undefined>;
  /** Removes one waiting or in-flight message: 'removed', or which of the two is missing. */
  deleteMessage(userId: string, id: string): Promise<'removed' | 'no-user' | 'no-message'>;
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

interface IndexEntry {
  userId: string;
  score: string;
}

/**
 * The Redis side of the admin: listings over the users index, totals, purge,
 * dead-letter retry and single-message removal. Multi-key steps on one user
 * are Lua scripts (one hash slot); the index lives in another slot, so it is
 * never touched in the same script as a user's keys (see `prune`).
 */
export function createAdminQueries(deps: { redis: Redis; clock: Clock; options: AdminQueriesOptions }): AdminQueries {
  const redis: ScriptedRedis = withScripts(deps.redis);
  const { clock, options } = deps;
  const keys = createKeys(options.keyPrefix);

  async function indexPage(after: IndexEntry | undefined, count: number): Promise<IndexEntry[]> {
    const flat = await redis.pbAdminIndexPage(keys.users(), after?.score ?? '', after?.userId ?? '', count);
    const out: IndexEntry[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push({ userId: flat[i] as string, score: flat[i + 1] as string });
    return out;
  }

  /** Counts of these users in one round trip; undefined for a user with nothing left. */
  async function countsOf(userIds: string[]): Promise<Array<QueueCounts | undefined>> {
    if (userIds.length === 0) return [];
    const pipeline = scriptedPipeline(redis);
    for (const u of userIds) pipeline.pbAdminCounts(keys.mailbox(u), keys.dead(u), GROUP);
    const replies = (await pipeline.exec()) ?? [];
    const now = clock.now();
    return userIds.map((userId, i) => {
      const [err, reply] = replies[i] ?? [new Error('missing pipeline reply'), null];
      if (err) throw err;
      const [length, inflight, dead, oldest] = reply as [number, number, number, string];
      if (length === 0 && dead === 0) return undefined;
      const oldestAgeMs = oldest === '' ? null : Math.max(0, now - enqueuedAtOf(oldest));
      return { userId, waiting: length - inflight, inflight, dead, oldestAgeMs };
    });
  }

  /**
   * Drops users with neither messages nor dead letters from the index. A
   * script cannot check the user's keys and ZREM in one step (two slots), so
   * this removes first, then checks, then puts back whoever got a message
   * meanwhile. An enqueue runs XADD before its ZADD NX: if its XADD comes
   * after our check, its ZADD comes after our ZREM and re-adds the user; if
   * before, our check sees it. Either way no user with messages stays out;
   * the cost is a moment in which a listing may miss that user.
   */
  async function prune(entries: IndexEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await redis.zrem(keys.users(), ...entries.map((e) => e.userId));
    const again = await countsOf(entries.map((e) => e.userId));
    const back = entries.filter((_, i) => again[i] !== undefined);
    if (back.length > 0) await redis.zadd(keys.users(), 'NX', ...back.flatMap((e) => [e.score, e.userId]));
  }

  /** Counts of one chunk of index entries, pruning the empty ones. */
  async function countChunk(entries: IndexEntry[]): Promise<Array<QueueCounts | undefined>> {
    const counts = await countsOf(entries.map((e) => e.userId));
    await prune(entries.filter((_, i) => counts[i] === undefined));
    return counts;
  }

  /** Every user with something queued among the first `scanMaxUsers` of the index. */
  async function scan(): Promise<{ rows: QueueCounts[]; truncated: boolean }> {
    const rows: QueueCounts[] = [];
    let after: IndexEntry | undefined;
    let scanned = 0;
    for (;;) {
      const want = Math.min(CHUNK, options.scanMaxUsers - scanned);
      if (want <= 0) return { rows, truncated: (await indexPage(after, 1)).length > 0 };
      const entries = await indexPage(after, want);
      for (const c of await countChunk(entries)) if (c !== undefined) rows.push(c);
      scanned += entries.length;
      if (entries.length < want) return { rows, truncated: false };
      after = entries[entries.length - 1];
    }
  }

  async function listByIndex(limit: number, cursor: Cursor | undefined): Promise<QueuePage> {
    let after: IndexEntry | undefined = cursor?.o === 'index' ? { score: cursor.s, userId: cursor.m } : undefined;
    const queues: QueueCounts[] = [];
    let scanned = 0;
    // Empty users are skipped (and pruned), so a page may need several chunks;
    // the scan bound keeps one request's work finite, and a short page with a
    // cursor then just means "keep going".
    while (scanned < options.scanMaxUsers) {
      const entries = await indexPage(after, Math.min(CHUNK, Math.max(limit - queues.length, 50)));
      if (entries.length === 0) return { queues, nextCursor: null, sort: 'index', truncated: false };
      const counts = await countChunk(entries);
      for (let i = 0; i < entries.length; i += 1) {
        after = entries[i];
        const c = counts[i];
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

  async function known(userId: string): Promise<boolean> {
    return (await redis.exists(keys.mailbox(userId), keys.dead(userId))) > 0;
  }

  /** Dead-letter entry ids (their own stream ids) with their original event ids, oldest first, in chunks. */
  async function* deadEntries(userId: string): AsyncGenerator<Array<{ entryId: string; id: string }>> {
    let start = '-';
    for (;;) {
      const chunk = await redis.xrange(keys.dead(userId), start, '+', 'COUNT', CHUNK);
      if (chunk.length === 0) return;
      yield chunk.map(([entryId, flat]) => ({ entryId, id: originalId(flat) ?? entryId }));
      if (chunk.length < CHUNK) return;
      start = `(${chunk[chunk.length - 1]?.[0]}`;
    }
  }

  return {
    keys,

    async list({ sort, limit, cursor }) {
      const decoded = cursor === undefined ? undefined : decodeCursor(cursor, sort);
      return sort === 'index' ? listByIndex(limit, decoded) : listSorted(sort, limit, decoded);
    },

    async totals() {
      const { rows, truncated } = await scan();
      const totals: QueueTotals = { users: rows.length, waiting: 0, inflight: 0, dead: 0, truncated };
      for (const r of rows) {
        totals.waiting += r.waiting;
        totals.inflight += r.inflight;
        totals.dead += r.dead;
      }
      return totals;
    },

    async purge(userId) {
      const [isKnown, waiting, inflight, dead] = await redis.pbAdminPurge(keys.mailbox(userId), keys.dead(userId), GROUP);
      if (isKnown === 0) return undefined;
      await prune([{ userId, score: String(clock.now()) }]);
      return { waiting, inflight, dead };
    },

    async retryDead(userId, ids) {
      if (!(await known(userId))) return undefined;
      const wanted = ids === undefined ? undefined : new Set(ids);
      const result: RetryResult = { retried: 0, ids: [], notFound: [], queueFull: false };
      // Read, then move by entry id: the script re-checks each entry, so a
      // concurrent retry of the same letters moves each one once.
      for await (const chunk of deadEntries(userId)) {
        const picked = wanted === undefined ? chunk : chunk.filter((e) => wanted.delete(e.id));
        if (picked.length > 0) {
          const [full, ...newIds] = await redis.pbAdminRetry(
            keys.mailbox(userId),
            keys.dead(userId),
            GROUP,
            options.queueMaxLength,
            keys.wakeChannel(),
            userId,
            ...picked.map((e) => e.entryId),
          );
          result.ids.push(...newIds);
          if (full === 1) {
            result.queueFull = true;
            break;
          }
        }
        if (wanted !== undefined && wanted.size === 0) break;
      }
      result.retried = result.ids.length;
      if (wanted !== undefined && !result.queueFull) result.notFound = [...wanted];
      if (result.retried > 0) await redis.zadd(keys.users(), 'NX', clock.now(), userId);
      return result;
    },

    async deleteMessage(userId, id) {
      if ((await redis.pbAdminDelete(keys.mailbox(userId), GROUP, id)) === 1) return 'removed';
      return (await known(userId)) ? 'no-message' : 'no-user';
    },
  };
}

function originalId(flat: string[]): string | undefined {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === 'id') return flat[i + 1];
  return undefined;
}
