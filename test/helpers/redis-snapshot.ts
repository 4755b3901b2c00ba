import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Keys that change on their own timers, whatever the requests do: node reports, the last
 * housekeeping run, BullMQ's bookkeeping, and the rate limiters' buckets (a refused request
 * may still spend a token; that is the limiter's job, not a change of anything stored).
 */
function isVolatile(key: string, prefix: string): boolean {
  return (
    key === `${prefix}:nodes` ||
    key === `${prefix}:housekeeping` ||
    key.startsWith(`${prefix}:rl:`) ||
    key.startsWith(`{${prefix}}:bull:`)
  );
}

/**
 * Every stored key of `prefix` with a digest of its whole content (DUMP), to compare
 * Redis before and after requests that must change nothing.
 */
export async function redisSnapshot(client: Redis, prefix: string): Promise<Map<string, string>> {
  const keys: string[] = [];
  let cursor = '0';
  // SCAN in pages; a test database holds a few thousand keys at most, the bound is generous.
  for (let page = 0; page < 100_000; page += 1) {
    const [next, found] = await client.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
    keys.push(...found);
    cursor = next;
    if (cursor === '0') break;
  }
  const kept = [...new Set(keys)].filter((k) => (k.startsWith(`${prefix}:`) || k.startsWith(`{${prefix}}`)) && !isVolatile(k, prefix));
  kept.sort();
  const dumps = await Promise.all(kept.map((k) => client.dumpBuffer(k)));
  const out = new Map<string, string>();
  kept.forEach((k, i) => {
    const dump = dumps[i];
    if (dump !== null && dump !== undefined) out.set(k, createHash('sha256').update(dump).digest('base64url'));
  });
  return out;
}

/** The keys that differ between two snapshots (added, removed or changed), for a readable failure. */
export function snapshotDiff(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [k, v] of after) if (before.get(k) !== v) changed.push(before.has(k) ? `changed ${k}` : `added ${k}`);
  for (const k of before.keys()) if (!after.has(k)) changed.push(`removed ${k}`);
  return changed;
}
