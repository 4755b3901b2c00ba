import { readFileSync } from 'node:fs';
import type { ChainableCommander, Redis } from 'ioredis';

type Arg = string | number;

/** The Lua scripts of `./lua`, registered on a connection with EVALSHA and a NOSCRIPT fallback. */
export interface ScriptCommands {
  pbEnqueue(mailbox: string, idempotency: string, expiries: string, ...args: Arg[]): Promise<EnqueueReply>;
  pbPop(mailbox: string, dead: string, ...args: Arg[]): Promise<PopReply>;
  pbAck(mailbox: string, ...args: Arg[]): Promise<number>;
  // Admin (src/queue/admin).
  pbAdminCounts(mailbox: string, dead: string, group: string): Promise<[number, number, number, string]>;
  pbAdminPurge(mailbox: string, dead: string, group: string): Promise<[number, number, number, number]>;
  pbAdminDelete(mailbox: string, group: string, id: string): Promise<number>;
  pbAdminRetry(mailbox: string, dead: string, ...args: Arg[]): Promise<[number, ...string[]]>;
  pbAdminIndexPage(index: string, score: string, member: string, count: number): Promise<string[]>;
  // Housekeeping (src/queue/housekeeping.ts).
  pbExpire(mailbox: string, expiries: string, ...args: Arg[]): Promise<[expired: number, more: number, deleted: number]>;
  // Drain lease of users shared between nodes (src/delivery/peer-delivery.ts).
  pbLeaseClaim(lease: string, nodeId: string, leaseMs: number): Promise<number>;
  pbLeaseRelease(lease: string, nodeId: string): Promise<number>;
}

/** `{status, id or length, created}`: see enqueue.lua. */
export type EnqueueReply = [status: number, value: string | number, created?: number];
export type PopReply = [number, number, number, number, ...Array<[string, string, string, number]>];

const scripts = {
  pbEnqueue: { file: 'enqueue.lua', numberOfKeys: 3 },
  pbPop: { file: 'pop.lua', numberOfKeys: 2 },
  pbAck: { file: 'ack.lua', numberOfKeys: 1 },
  pbAdminCounts: { file: 'admin-counts.lua', numberOfKeys: 2 },
  pbAdminPurge: { file: 'admin-purge.lua', numberOfKeys: 2 },
  pbAdminDelete: { file: 'admin-delete.lua', numberOfKeys: 1 },
  pbAdminRetry: { file: 'admin-retry.lua', numberOfKeys: 2 },
  pbAdminIndexPage: { file: 'admin-index-page.lua', numberOfKeys: 1 },
  pbExpire: { file: 'expire.lua', numberOfKeys: 2 },
  pbLeaseClaim: { file: 'lease-claim.lua', numberOfKeys: 1 },
  pbLeaseRelease: { file: 'lease-release.lua', numberOfKeys: 1 },
} as const;

const sources = new Map<string, string>();
function source(file: string): string {
  let lua = sources.get(file);
  if (lua === undefined) {
    lua = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    sources.set(file, lua);
  }
  return lua;
}

export type ScriptedRedis = Redis & ScriptCommands;
export type ScriptedPipeline = ChainableCommander & {
  [K in keyof ScriptCommands]: (...args: Parameters<ScriptCommands[K]>) => ScriptedPipeline;
};

/** Defines the scripts on `redis` (idempotent) and returns it typed with them. */
export function withScripts(redis: Redis): ScriptedRedis {
  for (const [name, { file, numberOfKeys }] of Object.entries(scripts)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua: source(file) });
  }
  return redis as ScriptedRedis;
}

export function scriptedPipeline(redis: ScriptedRedis): ScriptedPipeline {
  return redis.pipeline() as ScriptedPipeline;
}
