import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createTokens } from '../../src/http/tokens.js';
import { openSwarmStream, type SwarmStream } from '../helpers/sse-swarm.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { waitUntil } from '../helpers/wait-until.js';

// 2,000 pages, each from its own address, holding one unacked message each; every connection
// drops at once (a network blip, a proxy restart) and every page reconnects in the same instant.
// Default settings: nothing raised for the test.
let redis: TestRedis;
let app: TestApp;
let swarm: SwarmStream[] = [];

/** STORM_STREAMS: the soak (npm run test:soak) takes more. */
const STREAMS = Number(process.env.STORM_STREAMS ?? 2000);

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url);
});
afterAll(async () => {
  for (const s of swarm) s.socket.destroy();
  await app?.close();
  await redis?.stop();
});


describe('a reconnect storm', () => {
  it(`takes ${STREAMS} streams reconnecting at once: every one opens (200) and gets its in-flight message again`, { timeout: 180_000 }, async () => {
    const users = Array.from({ length: STREAMS }, (_, i) => `storm-${i}`);
    // Tokens as the producer's backend would sign them (POST /v1/tokens 2,000 times adds nothing here).
    const tokens = createTokens(app.config.TOKEN_SECRET, systemClock);
    const signed = await Promise.all(users.map(async (u) => (await tokens.issue(u, 3600)).token));
    const ids = new Map<string, string>();
    for (let start = 0; start < STREAMS; start += 1000) {
      const res = await app.produce('/v1/messages', { messages: users.slice(start, start + 1000).map((userId) => ({ userId, data: userId })) });
      expect(res.status).toBe(201);
      const { ids: batch } = (await res.json()) as { ids: string[] };
      batch.forEach((id, i) => ids.set(users[start + i] as string, id));
    }

    const openAll = async () => {
      const streams = users.map((u, i) => openSwarmStream(app.url, u, signed[i] as string, i));
      await Promise.all(streams.map((s) => s.answered));
      return streams;
    };
    swarm = await openAll();
    expect(swarm.filter((s) => s.status !== 200).map((s) => `${s.userId} ${s.status} ${s.error ?? ''}`)).toEqual([]);
    await waitUntil(() => swarm.every((s) => s.ids.length >= 1), 'every page got its message', 60_000);
    expect(app.postbox.hub.size).toBe(STREAMS);

    // The storm: every connection drops, and every page comes back at once.
    for (const s of swarm) s.socket.destroy();
    const again = await openAll();
    swarm = again;
    const refused = again.filter((s) => s.status !== 200);
    expect(refused.map((s) => `${s.userId} ${s.status} ${s.error ?? ''}`)).toEqual([]);
    await waitUntil(() => again.every((s) => s.ids.length >= 1), 'every page got its message again', 60_000);
    for (const s of again) expect(`${s.userId} ${s.ids[0]}`).toBe(`${s.userId} ${ids.get(s.userId)}`);
    await waitUntil(() => app.postbox.hub.size === STREAMS, 'the old streams are all closed', 30_000);

    // Nothing became a dead letter, nothing was lost: all 2,000 are in flight, once each.
    const check = redis.client();
    const pending = await Promise.all(users.slice(0, 200).map((u) => check.xpending(`pb:{${u}}:m`, 'delivery')));
    for (const p of pending) expect((p as [number])[0]).toBe(1);
    const dead = await Promise.all(users.slice(0, 200).map((u) => check.xlen(`pb:{${u}}:dead`)));
    expect(dead.every((n) => n === 0)).toBe(true);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/postbox_rate_limited_total\{limit="address_opens"\} 0/);
    expect(metrics).toMatch(/postbox_rate_limited_total\{limit="node_streams"\} 0/);
  });
});
