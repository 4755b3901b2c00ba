import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Keys } from './keys.js';
import type { RedisClient } from './redis.js';
import { withScripts } from './scripts.js';

/** A browser's PushSubscription as postbox keeps it (Push API: endpoint and keys). */
export interface PushSubscriptionKeys {
  /** The push resource (RFC 8030 §5): an https URL of the browser's push service. */
  endpoint: string;
  /** The browser's P-256 public key, base64url (RFC 8291 §3.1). */
  p256dh: string;
  /** The 16-byte authentication secret, base64url (RFC 8291 §3.2). */
  auth: string;
}

export interface StoredSubscription extends PushSubscriptionKeys {
  /** A digest of the endpoint: the same endpoint is always the same subscription. */
  id: string;
  /** When it was stored (or last refreshed), epoch ms. */
  at: number;
}

export interface PushSubscriptions {
  /** Stores (or refreshes) a subscription; beyond the limit the oldest ones are replaced. */
  add(userId: string, subscription: PushSubscriptionKeys): Promise<{ id: string; created: boolean; replaced: number }>;
  /** Removes the subscription with this endpoint; false when the user has none such. */
  remove(userId: string, endpoint: string): Promise<boolean>;
  /** Removes one by id (a push service answered 404/410 for it). */
  removeId(userId: string, id: string): Promise<boolean>;
  list(userId: string): Promise<StoredSubscription[]>;
  count(userId: string): Promise<number>;
}

/** The id of an endpoint: 128 bits of SHA-256, base64url (22 characters), safe in job ids. */
export function subscriptionId(endpoint: string): string {
  return createHash('sha256').update(endpoint).digest('base64url').slice(0, 22);
}

/** Reads one stored value; undefined when it is not what `add` wrote. */
export function parseSubscription(id: string, json: string): StoredSubscription | undefined {
  try {
    const v = JSON.parse(json) as Partial<StoredSubscription>;
    if (typeof v.endpoint !== 'string' || typeof v.p256dh !== 'string' || typeof v.auth !== 'string') return undefined;
    return { id, endpoint: v.endpoint, p256dh: v.p256dh, auth: v.auth, at: Number(v.at ?? 0) };
  } catch {
    return undefined;
  }
}

/**
 * The users' Web Push subscriptions, one hash per user (`pb:{<userId>}:push`, hash-tagged with
 * the mailbox so a Redis Cluster keeps them in one slot). Validation of what a browser sends,
 * and of where its endpoint points, is the caller's (src/http/push-routes.ts).
 */
export function createPushSubscriptions(deps: {
  redis: RedisClient;
  keys: Keys;
  clock: Clock;
  /** PUSH_MAX_SUBSCRIPTIONS_PER_USER. */
  maxPerUser: number;
}): PushSubscriptions {
  const redis = withScripts(deps.redis);
  const { keys, clock, maxPerUser } = deps;
  return {
    async add(userId, s) {
      const id = subscriptionId(s.endpoint);
      const json = JSON.stringify({ endpoint: s.endpoint, p256dh: s.p256dh, auth: s.auth, at: clock.now() });
      const [created, replaced] = await redis.pbPushSubscribe(keys.push(userId), id, json, maxPerUser);
      return { id, created: created === 1, replaced };
    },
    async remove(userId, endpoint) {
      return (await redis.hdel(keys.push(userId), subscriptionId(endpoint))) === 1;
    },
    async removeId(userId, id) {
      return (await redis.hdel(keys.push(userId), id)) === 1;
    },
    async list(userId) {
      const all = await redis.hgetall(keys.push(userId));
      return Object.entries(all)
        .flatMap(([id, json]) => parseSubscription(id, json) ?? [])
        .sort((a, b) => a.at - b.at);
    },
    count: (userId) => redis.hlen(keys.push(userId)),
  };
}
