import type { RedisClient } from '../queue/redis.js';
import { EVENT_ID_PATTERN } from '../queue/keys.js';
import { isSafeFrame, type SseFrame } from './sse-session.js';

/**
 * The user's channel: the one place that knows it. It is a sharded pub/sub
 * channel hash-tagged like the user's keys (`<prefix>:{<userId>}:ch`), so on
 * a Redis Cluster it lives on the user's shard and reaches only the nodes
 * that SSUBSCRIBEd to it, i.e. the nodes holding the user's streams; on one
 * Redis the same commands work, and a node still hears only its own users.
 *
 * What travels on it (published by the Lua scripts, given the name here):
 * - an event id: a wake, from enqueue.lua or admin-retry.lua (the message is waiting);
 * - `*`: a wake with no id (an admin freed an in-flight slot);
 * - `{"t":"f","from","frames"}`: what the drain lease holder wrote (pop.lua), for the other nodes' streams;
 * - `{"t":"a","from","ids","wake"}`: what was acked elsewhere (ack.lua).
 */
export type UserChannelMessage =
  | { t: 'wake'; id: string | undefined }
  | { t: 'frames'; from: string; frames: SseFrame[] }
  | { t: 'acked'; from: string; ids: string[]; wake: boolean };

/** The channel name of a user for a key prefix. */
export function userChannel(keyPrefix: string): (userId: string) => string {
  return (userId) => `${keyPrefix}:{${userId}}:ch`;
}

export interface UserChannels {
  readonly name: (userId: string) => string;
  /** Starts hearing the user's channel; resolves once Redis confirmed the subscription. */
  subscribe(userId: string): Promise<void>;
  unsubscribe(userId: string): Promise<void>;
  /** Wakes whichever nodes hold the user, without an id (an admin freed a slot; an ack reopened a window). */
  wake(userId: string): Promise<void>;
  close(): void;
}

/**
 * Subscriptions to users' channels on the dedicated pub/sub connection, and
 * the parsing of what arrives: nothing that fails the checks (event ids and
 * names as enqueue enforces them, one-line data) reaches a handler.
 */
export function createUserChannels(deps: {
  redis: RedisClient;
  subscriber: RedisClient;
  keyPrefix: string;
  onMessage: (userId: string, message: UserChannelMessage) => void;
}): UserChannels {
  const { redis, subscriber, onMessage } = deps;
  const name = userChannel(deps.keyPrefix);
  const prefix = `${deps.keyPrefix}:{`;
  const suffix = '}:ch';

  const listener = (channel: string, text: string) => {
    if (!channel.startsWith(prefix) || !channel.endsWith(suffix)) return;
    const userId = channel.slice(prefix.length, -suffix.length);
    const message = parse(text);
    if (message !== undefined) onMessage(userId, message);
  };
  subscriber.on('smessage', listener);

  return {
    name,
    async subscribe(userId) {
      await subscriber.ssubscribe(name(userId));
    },
    async unsubscribe(userId) {
      await subscriber.sunsubscribe(name(userId));
    },
    async wake(userId) {
      await redis.spublish(name(userId), '*');
    },
    close() {
      subscriber.off('smessage', listener);
    },
  };
}

function parse(text: string): UserChannelMessage | undefined {
  if (text === '*') return { t: 'wake', id: undefined };
  if (EVENT_ID_PATTERN.test(text)) return { t: 'wake', id: text };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined; // not ours
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const m = value as { t?: unknown; from?: unknown; frames?: unknown; ids?: unknown; wake?: unknown };
  if (typeof m.from !== 'string') return undefined;
  if (m.t === 'f' && Array.isArray(m.frames)) {
    // Whatever reaches the channel is checked as enqueue checks it before it can reach SSE framing.
    return { t: 'frames', from: m.from, frames: (m.frames as unknown[]).filter(isSafeFrame) };
  }
  // cjson encodes an empty Lua table as {}, not [].
  if (m.t === 'a' && (Array.isArray(m.ids) || typeof m.ids === 'object')) {
    const ids = Array.isArray(m.ids) ? m.ids.filter((id): id is string => typeof id === 'string' && EVENT_ID_PATTERN.test(id)) : [];
    return { t: 'acked', from: m.from, ids, wake: m.wake === 1 || m.wake === true };
  }
  return undefined;
}
