import { GROUP, type Keys } from './keys.js';
import { parseSubscription, type StoredSubscription } from './push-subscriptions.js';
import type { RedisClient } from './redis.js';
import { withScripts, type PushDueReply } from './scripts.js';

/** A message's Web Push option as the producer gave it (stored as field `p` of the entry). */
export interface PushOption {
  title: string;
  body?: string | undefined;
  /** RFC 8030 §5.3. */
  urgency?: 'very-low' | 'low' | 'normal' | 'high' | undefined;
  /** RFC 8030 §5.4: a newer push with the same topic replaces an undelivered one. */
  topic?: string | undefined;
}

/** Where a message stands, as src/queue/lua/push-due.lua reads it. */
export type PushDueState =
  | { state: 'gone'; holders: number }
  | {
      state: 'waiting' | 'inflight';
      /** Nodes holding an open stream of the user. */
      holders: number;
      /** In flight: since it was last written, ms. */
      idleMs: number;
      /** In flight: writes so far. */
      attempts: number;
      /** Epoch ms; undefined = never. */
      expiresAt: number | undefined;
      event: string;
      /** undefined when the message has no (readable) push option. */
      push: PushOption | undefined;
      /** The message's data as JSON text ('' when no subscription was asked for). */
      data: string;
      /** With `which: '*'`: the user's subscriptions; with an id: that one, if still stored. */
      subscriptions: StoredSubscription[];
    };

export type ReadPushDue = (userId: string, id: string, which: '*' | '' | (string & {})) => Promise<PushDueState>;

function parsePush(json: string): PushOption | undefined {
  if (json === '') return undefined;
  try {
    const v = JSON.parse(json) as PushOption;
    return typeof v?.title === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

function subscriptionsOf(pairs: string[]): StoredSubscription[] {
  const out: StoredSubscription[] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const s = parseSubscription(pairs[i] as string, pairs[i + 1] as string);
    if (s) out.push(s);
  }
  return out;
}

/** One round trip: the message, whether a stream holds the user, and the subscriptions asked for. */
export function createPushDue(deps: { redis: RedisClient; keys: Keys }): ReadPushDue {
  const redis = withScripts(deps.redis);
  const { keys } = deps;
  return async (userId, id, which) => {
    const reply: PushDueReply = await redis.pbPushDue(keys.mailbox(userId), keys.registry(userId), keys.push(userId), GROUP, id, which);
    const [state, holders, idleMs, attempts, expiresAt, event, push, data, ...pairs] = reply;
    if (state === 0) return { state: 'gone', holders };
    return {
      state: state === 2 ? 'inflight' : 'waiting',
      holders,
      idleMs,
      attempts,
      expiresAt: expiresAt > 0 ? expiresAt : undefined,
      event,
      push: parsePush(push),
      data,
      subscriptions: subscriptionsOf(pairs),
    };
  };
}
