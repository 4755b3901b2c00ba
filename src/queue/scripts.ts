import { readFileSync } from 'node:fs';
import type { RedisClient } from './redis.js';

type Arg = string | number;

/**
 * The Lua scripts of `./lua`, registered on a connection (EVALSHA with a
 * NOSCRIPT fallback). The first argument is always KEYS[1], which is also how
 * auto-pipelining routes a script to its node on a cluster.
 */
export interface ScriptCommands {
  pbEnqueue(...args: Arg[]): Promise<EnqueueReply>;
  pbPop(...args: Arg[]): Promise<PopReply>;
  pbJoin(...args: Arg[]): Promise<JoinReply>;
  pbRelease(registry: string, lease: string, nodeId: string): Promise<number>;
  pbAck(...args: Arg[]): Promise<[acked: number, wake: number, ...ids: string[]]>;
  pbNack(...args: Arg[]): Promise<number>;
  // Admin (src/queue/admin).
  pbAdminCounts(...args: Arg[]): Promise<AdminCountsReply>;
  pbAdminPurge(mailbox: string, dead: string, counted: string, group: string): Promise<[number, number, number, number]>;
  pbAdminDelete(mailbox: string, counted: string, group: string, id: string): Promise<number>;
  pbAdminRetry(...args: Arg[]): Promise<[number, ...string[]]>;
  pbAdminIndexPage(index: string, score: string, member: string, count: number): Promise<string[]>;
  // Housekeeping (src/queue/housekeeping.ts).
  pbExpire(...args: Arg[]): Promise<[expired: number, more: number, gone: number, outbox: number]>;
  // Receipts and webhooks (src/queue/receipts.ts, src/queue/webhook-outbox.ts).
  pbStatus(...args: Arg[]): Promise<StatusReply>;
  pbOutboxTake(...args: Arg[]): Promise<OutboxTakeReply>;
  pbOutboxDone(...args: Arg[]): Promise<number>;
  // Web Push (src/queue/push-subscriptions.ts, push-due.ts).
  pbPushSubscribe(subs: string, id: string, json: string, max: number): Promise<[created: number, replaced: number, count: number]>;
  pbPushDue(...args: Arg[]): Promise<PushDueReply>;
  pbPushAck(...args: Arg[]): Promise<[acked: number, wake: number]>;
}

/** See status.lua: one entry per id asked. */
export type StatusReply = Array<
  | [kind: 'r', receipt: string]
  | [kind: 'i', attempts: number, firstWriteMs: number, deliveries: number, expiresAt: string]
  | [kind: 'w', expiresAt: string]
  | [kind: 'u']
>;
/** See outbox-take.lua. */
export type OutboxTakeReply = [status: number, ...entries: Array<[entryId: string, state: string, items: string]>];

/** `{status, id or length, created, local}`: see enqueue.lua. */
export type EnqueueReply = [status: number, value: string | number, created?: number, local?: number];
/** See pop.lua. */
export type PopReply = [
  status: number,
  inflight: number,
  more: number,
  expired: number,
  dead: number,
  nextDueMs: number,
  shared: number,
  waitMs: number,
  unresponsive: number,
  ...entries: Array<[id: string, event: string, data: string, attempts: number]>,
];
/** See push-due.lua. */
export type PushDueReply = [
  state: number,
  holders: number,
  idleMs: number,
  attempts: number,
  expiresAt: number,
  event: string,
  push: string,
  data: string,
  ...subscriptions: string[], // id1, json1, id2, json2, ...
];
/** See admin-counts.lua. */
export type AdminCountsReply = [
  length: number,
  inflight: number,
  dead: number,
  oldest: string,
  expiredWaiting: number,
  expiredInflight: number,
];
/** See join.lua. */
export type JoinReply = [
  others: number,
  notices: [] | [waiting: number, inflight: number, expiredCount: number, expiredIds: string[]],
  ...entries: Array<[id: string, event: string, data: string, attempts: number, idleMs: number]>,
];

const scripts: Record<keyof ScriptCommands, { file: string; numberOfKeys: number }> = {
  pbEnqueue: { file: 'enqueue.lua', numberOfKeys: 5 },
  pbPop: { file: 'pop.lua', numberOfKeys: 13 },
  pbJoin: { file: 'join.lua', numberOfKeys: 7 },
  pbRelease: { file: 'release.lua', numberOfKeys: 2 },
  pbAck: { file: 'ack.lua', numberOfKeys: 9 },
  pbNack: { file: 'nack.lua', numberOfKeys: 3 },
  pbAdminCounts: { file: 'admin-counts.lua', numberOfKeys: 3 },
  pbAdminPurge: { file: 'admin-purge.lua', numberOfKeys: 3 },
  pbAdminDelete: { file: 'admin-delete.lua', numberOfKeys: 2 },
  pbAdminRetry: { file: 'admin-retry.lua', numberOfKeys: 4 },
  pbAdminIndexPage: { file: 'admin-index-page.lua', numberOfKeys: 1 },
  pbExpire: { file: 'expire.lua', numberOfKeys: 10 },
  pbStatus: { file: 'status.lua', numberOfKeys: 4 },
  pbOutboxTake: { file: 'outbox-take.lua', numberOfKeys: 2 },
  pbOutboxDone: { file: 'outbox-done.lua', numberOfKeys: 2 },
  pbPushSubscribe: { file: 'push-subscribe.lua', numberOfKeys: 1 },
  pbPushDue: { file: 'push-due.lua', numberOfKeys: 3 },
  pbPushAck: { file: 'push-ack.lua', numberOfKeys: 8 },
};

/**
 * A line `--- @include "includes/<name>.lua"` (as in bullmq's scripts) stands for that file of
 * `./lua`: functions several scripts share, whose keys the script passes in from its own KEYS,
 * so the cluster rule (every key in KEYS, one hash tag) holds for the whole script. Includes
 * do not include.
 */
const INCLUDE = /^--- @include "([\w./-]+\.lua)"$/gm;

const sources = new Map<string, string>();
function source(file: string): string {
  let lua = sources.get(file);
  if (lua === undefined) {
    const read = (name: string) => readFileSync(new URL(`./lua/${name}`, import.meta.url), 'utf8');
    lua = read(file).replace(INCLUDE, (_, name: string) => read(name).trimEnd());
    sources.set(file, lua);
  }
  return lua;
}

export type ScriptedRedis = RedisClient & ScriptCommands;

/** Defines the scripts on `redis` (idempotent) and returns it typed with them. */
export function withScripts(redis: RedisClient): ScriptedRedis {
  for (const [name, { file, numberOfKeys }] of Object.entries(scripts)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua: source(file) });
  }
  return redis as ScriptedRedis;
}
