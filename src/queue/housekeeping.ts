import type { Clock } from '../clock.js';
import { GROUP, type Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { noticeKeys, receiptKeys, receiptSpec } from './receipts.js';
import { withScripts, type ScriptCommands } from './scripts.js';
import { createUsersIndex } from './users-index.js';

export interface HousekeepingOptions {
  /** Users taken from the index per ZSCAN, and mailboxes per pipelined round trip. @defaultValue 500 */
  usersPerChunk?: number;
  /** Expired entries one script call drops, which bounds how long it holds Redis. @defaultValue 1000 */
  entriesPerCall?: number;
  /** An empty mailbox with no new entry for this long is deleted, ms; 0 keeps them. @defaultValue 3600000 */
  emptyIdleMs?: number;
  /** What the scripts record of expired messages (src/queue/receipts.ts `receiptSpec`). @defaultValue none */
  receiptSpec?: string;
  /**
   * Users whose webhook outbox holds entries after their sweep: what this sweep expired, or what
   * a node that stopped left behind; this node's outbox takes them (src/queue/webhook-outbox.ts).
   */
  onOutbox?: (userId: string) => void;
}

export interface SweepResult {
  /** Mailboxes looked at. */
  users: number;
  /** Messages dropped past their TTL. */
  expired: number;
  /** Users who left the users index: their empty, idle mailbox was deleted (or was gone) and they have no dead letters. */
  deleted: number;
  /** Epoch ms when the sweep ended. */
  at: number;
  ms: number;
}

export interface Housekeeper {
  /** One pass over every mailbox in the users index. */
  sweep(): Promise<SweepResult>;
  /** The last sweep of any node, from Redis; undefined before the first. */
  lastRun(): Promise<SweepResult | undefined>;
}

type ExpireReply = Awaited<ReturnType<ScriptCommands['pbExpire']>>;

/**
 * Drops messages past their TTL from every mailbox, including those nobody
 * drains (the drain worker drops them only for connected users), and deletes
 * empty idle mailboxes, so Redis memory stays bounded. It reads each user's
 * expiries set, so its cost follows the messages that expire, not the backlog. Idempotency records
 * need no sweep: they are written with PX and expire by themselves.
 */
export function createHousekeeper(deps: {
  redis: RedisClient;
  keys: Keys;
  clock: Clock;
  options?: HousekeepingOptions;
}): Housekeeper {
  const { keys, clock } = deps;
  const usersPerChunk = deps.options?.usersPerChunk ?? 500;
  const entriesPerCall = deps.options?.entriesPerCall ?? 1000;
  const emptyIdleMs = deps.options?.emptyIdleMs ?? 3_600_000;
  const spec = deps.options?.receiptSpec ?? receiptSpec(undefined);
  const onOutbox = deps.options?.onOutbox;
  const redis = withScripts(deps.redis);
  const index = createUsersIndex({ redis, keys });

  /** Sweeps one chunk of users, calling the script again for those with more expired entries than one call takes. */
  async function sweepUsers(userIds: string[], now: number): Promise<{ expired: number; emptied: string[] }> {
    let expired = 0;
    const emptied: string[] = [];
    let todo = userIds;
    while (todo.length > 0) {
      const replies = await Promise.all(
        todo.map((u) =>
          redis.pbExpire(
            keys.mailbox(u),
            keys.expiries(u),
            keys.counted(u),
            keys.lastAck(u),
            ...receiptKeys(keys, u),
            ...noticeKeys(keys, u),
            GROUP,
            now,
            entriesPerCall,
            emptyIdleMs,
            spec,
          ),
        ),
      );
      const next: string[] = [];
      todo.forEach((userId, i) => {
        const [n, more, gone, outbox] = replies[i] as ExpireReply;
        expired += n;
        if (outbox > 0) onOutbox?.(userId);
        if (more === 1) next.push(userId);
        if (gone === 1) emptied.push(userId);
      });
      todo = next;
    }
    return { expired, emptied };
  }

  return {
    async sweep() {
      const started = clock.now();
      let cursor = '0';
      let users = 0;
      let expired = 0;
      let deleted = 0;
      do {
        const [next, flat] = await redis.zscan(keys.users(), cursor, 'COUNT', usersPerChunk);
        cursor = next;
        const userIds = flat.filter((_, i) => i % 2 === 0);
        users += userIds.length;
        const result = await sweepUsers(userIds, clock.now());
        expired += result.expired;
        deleted += (await index.unindexGone(result.emptied)).length;
      } while (cursor !== '0');
      const at = clock.now();
      const run: SweepResult = { users, expired, deleted, at, ms: at - started };
      await redis.hset(keys.housekeeping(), { ...run });
      return run;
    },

    async lastRun() {
      const h = await redis.hgetall(keys.housekeeping());
      if (h.at === undefined) return undefined;
      const n = (field: string) => Number(h[field] ?? 0);
      return { users: n('users'), expired: n('expired'), deleted: n('deleted'), at: n('at'), ms: n('ms') };
    },
  };
}
