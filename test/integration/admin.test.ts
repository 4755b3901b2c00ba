import { beforeAll, describe, expect, it } from 'vitest';
import { enqueuedAtOf } from '../../src/queue/keys.js';
import { waitPastAckTimeout } from '../helpers/past-ack-timeout.js';
import type { SseReader } from '../helpers/read-sse.js';
import type { TestApp } from '../helpers/start-app.js';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';
import { failUntilDead } from '../helpers/dead-letters.js';

// Its log lines are kept: the audit lines are asserted on.
const node = useNode({ DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 300, MAX_DELIVERIES: 2, JOB_LOCK_MS: 1000 }, { logs: 'info' });
const logs = node.logs;
// Streams that must leave a message in flight (neither redelivered nor dead-lettered by the
// 300 ms ack timeout above, however slow the machine) are opened on this node: the node that
// drains a user times its acks. Same Redis, same prefix, so the admin of either sees it.
const holder = useNode({ ACK_TIMEOUT_MS: 60_000, DRAIN_INTERVAL_MS: 50 }, { redis: node.redis });

interface Row {
  userId: string;
  waiting: number;
  inflight: number;
  dead: number;
  connections: number;
  oldestAgeMs: number | null;
}
interface Page {
  queues: Row[];
  nextCursor: string | null;
  sort: string;
  truncated: boolean;
}
interface View {
  userId: string;
  waiting: number;
  inflight: number;
  scheduled: number;
  dead: number;
  connections: number;
  oldestWaiting: Array<{ id: string; event: string; data: unknown }>;
  inflightMessages: Array<{ id: string; deliveries: number; idleMs: number }>;
  deadLetters: Array<{ id: string; data: unknown; deliveries: number; reason: string }>;
}

const json = async <T>(res: Response, status = 200): Promise<T> => {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
};
const view = async (userId: string) => json<View>(await node.app.admin(`/admin/queues/${userId}`));
const post = (path: string, body?: unknown) =>
  node.app.admin(path, {
    method: 'POST',
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
const del = (path: string) => node.app.admin(path, { method: 'DELETE' });
/** Closes a stream and waits until its node knows, so that node writes nothing more for the user. */
async function closeStream(on: TestApp, sse: SseReader, userId: string): Promise<void> {
  sse.close();
  await waitUntil(() => on.postbox.hub.count(userId) === 0, `the node saw the stream of ${userId} close`);
}
/** Ids in order of first arrival, as a client that drops repeats sees them. */
const firstSeen = (reader: SseReader) => [...new Set(reader.events.map((e) => e.id))];
const auditOf = (action: string) => logs.filter((l) => (l.audit as { action?: string } | undefined)?.action === action);

/** Enqueues `n` messages to a page whose handler fails on them, until they are dead letters. */
async function deadLetters(userId: string, n: number): Promise<string[]> {
  const { app } = node;
  const ids: string[] = [];
  for (let i = 0; i < n; i += 1) ids.push(await app.enqueue(userId, { dead: i }));
  await failUntilDead(app, userId, n);
  expect((await view(userId)).dead).toBe(n);
  return ids;
}

describe('admin auth', () => {
  const routes: Array<[string, string]> = [
    ['GET', '/admin/queues'],
    ['GET', '/admin/queues/someone'],
    ['DELETE', '/admin/queues/someone'],
    ['POST', '/admin/queues/someone/dead/retry'],
    ['DELETE', '/admin/queues/someone/messages/1-0'],
    ['GET', '/admin/stats'],
    ['GET', '/admin/rooms'],
    ['GET', '/admin/rooms/lobby'],
    ['POST', '/admin/session'],
    ['GET', '/admin/jobs'],
  ];

  it('answers 401 with no detail for a missing or wrong key, 403 for the producer key or a stream token', async () => {
    const { app } = node;
    await app.enqueue('someone', 'keep me');
    const token = await app.token('someone');
    for (const [method, path] of routes) {
      const none = await fetch(app.url + path, { method });
      expect(none.status, `${method} ${path}`).toBe(401);
      const body = (await none.json()) as { error: Record<string, unknown> };
      expect(body.error.code).toBe('PB_ERR_UNAUTHENTICATED');
      expect(body.error.details).toBeUndefined();
      const wrong = await fetch(app.url + path, { method, headers: { authorization: 'Bearer not-the-key-at-all' } });
      expect(wrong.status, `${method} ${path}`).toBe(401);
      for (const credential of [app.config.API_KEY, token]) {
        const res = await fetch(app.url + path, { method, headers: { authorization: `Bearer ${credential}` } });
        expect(res.status, `${method} ${path}`).toBe(403);
      }
    }
    // Nothing was purged by the refused DELETE.
    expect((await view('someone')).waiting).toBe(1);
  });
});

describe('GET /admin/queues/:userId', () => {
  it('shows waiting, in-flight with attempts, counted deliveries and idle time, scheduled and dead letters', async () => {
    const { app } = node;
    const dead = await deadLetters('inspected', 1);
    const sse = await holder.app.openStream('inspected');
    const inflightId = await app.enqueue('inspected', { n: 'flying' });
    await sse.waitFor(1);
    await closeStream(holder.app, sse, 'inspected');
    const waitingId = await app.enqueue('inspected', { n: 'waiting' }, { event: 'note' });
    const later = await app.produce('/v1/users/inspected/messages', { data: 'later', delayMs: 60_000 });
    expect(later.status).toBe(202);

    const v = await view('inspected');
    expect(v).toMatchObject({ userId: 'inspected', waiting: 1, inflight: 1, scheduled: 1, dead: 1 });
    expect(v.oldestWaiting).toEqual([expect.objectContaining({ id: waitingId, event: 'note', data: { n: 'waiting' } })]);
    expect(v.inflightMessages).toEqual([{ id: inflightId, deliveries: 0, attempts: 1, idleMs: expect.any(Number) }]);
    expect(v.deadLetters).toEqual([expect.objectContaining({ id: dead[0], deliveries: 2, reason: 'max-deliveries', data: { dead: 0 } })]);
  });

  it('answers 404 for an unknown user and 400 for a malformed one', async () => {
    const { app } = node;
    expect((await json<{ error: { code: string } }>(await app.admin('/admin/queues/nobody-here'), 404)).error.code).toBe(
      'PB_ERR_USER_NOT_FOUND',
    );
    expect((await app.admin('/admin/queues/bad%20user')).status).toBe(400);
  });
});

describe('DELETE /admin/queues/:userId', () => {
  it('purges waiting, in-flight and dead messages, reports what it removed, and logs who did it', async () => {
    const { app } = node;
    await deadLetters('purged', 1);
    const first = await holder.app.openStream('purged');
    await app.enqueue('purged', 'in flight');
    await first.waitFor(1);
    await closeStream(holder.app, first, 'purged');
    for (let i = 0; i < 3; i += 1) await app.enqueue('purged', i);

    const purgedFrom = Date.now();
    const res = await json<{ removed: Record<string, number> }>(await del('/admin/queues/purged'));
    expect(res.removed).toEqual({ waiting: 3, inflight: 1, dead: 1 });
    expect(await view('purged')).toMatchObject({ waiting: 0, inflight: 0, dead: 0 });
    const [line] = auditOf('purge');
    expect(line).toMatchObject({ level: 30, audit: { actor: 'admin', action: 'purge', target: { userId: 'purged' } } });
    expect(Date.parse((line!.audit as { at: string }).at)).toBeGreaterThanOrEqual(purgedFrom);
    // Nothing purged is delivered any more, not even past the ack timeout of what was in
    // flight; a new enqueue is, as usual.
    const token = await app.token('purged');
    const sse = await app.openStream('purged', { token });
    const id = await app.enqueue('purged', 'after');
    await sse.waitFor(1);
    const canary = await waitPastAckTimeout([sse], () => app.enqueue('purged', 'canary'), (c) => app.nack(token, [c]));
    expect(firstSeen(sse)).toEqual([id, canary]);
    sse.close();
    expect((await del('/admin/queues/never-was')).status).toBe(404);
  });
});

describe('POST /admin/queues/:userId/dead/retry', () => {
  it('queues every dead letter again with new ids, or only the given ones', async () => {
    const { app } = node;
    const ids = await deadLetters('retried', 3);
    const one = await json<{ retried: number; ids: string[]; notFound: string[] }>(
      await post('/admin/queues/retried/dead/retry', { ids: [ids[1], '1-1'] }),
    );
    expect(one).toMatchObject({ retried: 1, notFound: ['1-1'], queueFull: false });
    expect(one.ids[0]).not.toBe(ids[1]);
    let v = await view('retried');
    expect(v).toMatchObject({ waiting: 1, dead: 2 });
    expect(v.oldestWaiting[0]).toMatchObject({ id: one.ids[0], data: { dead: 1 } });

    const all = await json<{ retried: number }>(await post('/admin/queues/retried/dead/retry'));
    expect(all.retried).toBe(2);
    v = await view('retried');
    expect(v).toMatchObject({ waiting: 3, dead: 0 });
    expect(auditOf('retry-dead')).toHaveLength(2);

    // Retried messages are delivered again.
    const sse = await app.openStream('retried');
    const events = await sse.waitFor(3);
    expect(events.map((e) => JSON.parse(e.data))).toEqual([{ dead: 1 }, { dead: 0 }, { dead: 2 }]);
    sse.close();
  });

  it('rejects malformed ids (400) and unknown users (404)', async () => {
    expect((await post('/admin/queues/retried/dead/retry', { ids: ['nope'] })).status).toBe(400);
    expect((await post('/admin/queues/retried/dead/retry', { ids: [] })).status).toBe(400);
    expect((await post('/admin/queues/ghost/dead/retry')).status).toBe(404);
  });
});

describe('DELETE /admin/queues/:userId/messages/:id', () => {
  it('removes a waiting message and an in-flight one, which is then never redelivered', async () => {
    const { app } = node;
    const sse = await holder.app.openStream('trimmed');
    const flying = await app.enqueue('trimmed', 'flying');
    await sse.waitFor(1);
    await closeStream(holder.app, sse, 'trimmed');
    const waiting = await app.enqueue('trimmed', 'waiting');
    const kept = await app.enqueue('trimmed', 'kept');

    expect(await json(await del(`/admin/queues/trimmed/messages/${waiting}`))).toEqual({
      userId: 'trimmed',
      id: waiting,
      removed: true,
    });
    expect((await json(await del(`/admin/queues/trimmed/messages/${flying}`))) as object).toMatchObject({ removed: true });
    const v = await view('trimmed');
    expect(v).toMatchObject({ waiting: 1, inflight: 0 });
    expect(auditOf('delete-message').map((l) => (l.audit as { target: unknown }).target)).toEqual([
      { userId: 'trimmed', id: waiting },
      { userId: 'trimmed', id: flying },
    ]);

    const token = await app.token('trimmed');
    const again = await app.openStream('trimmed', { token });
    await again.waitFor(1);
    await app.ack(token, [kept]);
    // Past the ack timeout of what was in flight: the removed in-flight message is not redelivered.
    const canary = await waitPastAckTimeout([again], () => app.enqueue('trimmed', 'canary'), (c) => app.nack(token, [c]));
    expect(firstSeen(again)).toEqual([kept, canary]);
    again.close();
  });

  it('answers 404 for an absent message or user and 400 for a malformed id', async () => {
    const { app } = node;
    await app.enqueue('trimmed2', 'x');
    expect((await json<{ error: { code: string } }>(await del('/admin/queues/trimmed2/messages/1-0'), 404)).error.code).toBe(
      'PB_ERR_MESSAGE_NOT_FOUND',
    );
    expect((await del('/admin/queues/ghost/messages/1-0')).status).toBe(404);
    expect((await del('/admin/queues/trimmed2/messages/not-an-id')).status).toBe(400);
  });
});

describe('GET /admin/queues', () => {
  const listerNode = useNode({ KEY_PREFIX: 'lister', DRAIN_INTERVAL_MS: 50 }, { redis: node.redis });
  const list = async (query: string) => json<Page>(await listerNode.app.admin(`/admin/queues${query}`));

  beforeAll(async () => {
    const lister = listerNode.app;
    // Backlogs: u-a 3, u-b 1, u-c 5, u-d 2; u-e had messages, all acked.
    for (const [user, n] of [['u-a', 3], ['u-b', 1], ['u-c', 5], ['u-d', 2], ['u-e', 1]] as const) {
      let last = '';
      for (let i = 0; i < n; i += 1) last = await lister.enqueue(user, i);
      // Distinct ages: the next user's oldest message gets a later millisecond (its id's time).
      await waitUntil(() => Date.now() > enqueuedAtOf(last), 'the clock moves past the last enqueue');
    }
    const token = await lister.token('u-e');
    const sse = await lister.openStream('u-e', { token });
    const [event] = await sse.waitFor(1);
    await lister.ack(token, [event!.id!]);
    sse.close();
  });

  it('lists users with a backlog, sorted by backlog or by age, with counts', async () => {
    const page = await list('?sort=backlog');
    expect(page.queues.map((q) => [q.userId, q.waiting])).toEqual([
      ['u-c', 5],
      ['u-a', 3],
      ['u-d', 2],
      ['u-b', 1],
    ]);
    expect(page.queues[0]).toEqual({
      userId: 'u-c',
      waiting: 5,
      inflight: 0,
      dead: 0,
      connections: 0,
      oldestAgeMs: expect.any(Number),
    });
    expect(page.nextCursor).toBeNull();
    expect((await list('?sort=age')).queues.map((q) => q.userId)).toEqual(['u-a', 'u-b', 'u-c', 'u-d']);
  });

  it('lists only users with something queued, while the index keeps every user in its place', async () => {
    const lister = listerNode.app;
    const index = node.redis.client();
    const score = await index.zscore('lister:users', 'u-e');
    // u-e has a mailbox (empty): it stays indexed, with the score it entered with, and is not listed.
    expect(score).not.toBeNull();
    expect((await list('')).queues.map((q) => q.userId)).not.toContain('u-e');
    await lister.enqueue('u-e', 'again');
    expect((await list('')).queues.map((q) => q.userId)).toEqual(['u-a', 'u-b', 'u-c', 'u-d', 'u-e']);
    await lister.admin('/admin/queues/u-e', { method: 'DELETE' });
    expect((await list('')).queues.map((q) => q.userId)).not.toContain('u-e');
    // Listing and purging never re-rank a user: sort=index is the order users first got a mailbox.
    expect(await index.zscore('lister:users', 'u-e')).toBe(score);
  });

  it('pages with a cursor, each user once, in index order and in sorted order', async () => {
    for (const query of ['?limit=2', '?limit=3&sort=backlog']) {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: Page = await list(`${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(page.queues.length).toBeLessThanOrEqual(query.includes('limit=2') ? 2 : 3);
        seen.push(...page.queues.map((q) => q.userId));
        cursor = page.nextCursor;
      } while (cursor !== null);
      expect([...seen].sort()).toEqual(['u-a', 'u-b', 'u-c', 'u-d']);
    }
  });

  it('rejects a limit over 1000, a bad cursor and a cursor of another sort with 400', async () => {
    const lister = listerNode.app;
    expect((await lister.admin('/admin/queues?limit=1001')).status).toBe(400);
    expect((await lister.admin('/admin/queues?limit=0')).status).toBe(400);
    expect((await lister.admin('/admin/queues?limit=1000')).status).toBe(200);
    expect((await lister.admin('/admin/queues?cursor=garbage')).status).toBe(400);
    expect((await lister.admin('/admin/queues?sort=size')).status).toBe(400);
    const { nextCursor } = await list('?sort=backlog&limit=1');
    expect((await lister.admin(`/admin/queues?sort=age&cursor=${nextCursor}`)).status).toBe(400);
  });
});

describe('GET /admin/stats', () => {
  it('shows totals, open streams per node and message rates over the last minute', async () => {
    const { app } = node;
    const sse = await app.openStream('watcher');
    for (let i = 0; i < 5; i += 1) await app.enqueue('stats-user', i);
    type Stats = {
      totals: { users: number; waiting: number; inflight: number; dead: number };
      node: { streams: number };
      nodes: Array<{ node: string; streams: number }>;
      rates: { perSecond: Record<string, number> };
      series: Array<{ t: number; enqueued: number }>;
    };
    const readStats = async () => json<Stats>(await app.admin('/admin/stats'));
    // The sampler ticks every second: wait for a sample that has seen the enqueues (the
    // series keeps it for minutes, the last-minute rate for a minute).
    await waitUntil(
      async () => expect((await readStats()).series.some((p) => p.enqueued > 0)).toBe(true),
      'the rate sampler counts the enqueues',
    );
    const stats = await readStats();
    expect(stats.totals.waiting).toBeGreaterThanOrEqual(5);
    expect(stats.totals.users).toBeGreaterThanOrEqual(1);
    expect(stats.node.streams).toBe(1);
    expect(stats.nodes.map((n) => n.streams)).toContain(1);
    expect(stats.rates.perSecond.enqueued).toBeGreaterThan(0);
    expect(stats.series.length).toBeGreaterThanOrEqual(1);
    expect(stats.series.some((p) => p.enqueued > 0)).toBe(true);
    sse.close();
  });
});

describe('admin rooms', () => {
  it('lists rooms with member counts and shows one room with its members and fan-outs', async () => {
    const { app } = node;
    for (const user of ['m1', 'm2', 'm3']) {
      expect((await app.produce(`/v1/rooms/lobby/members/${user}`, undefined, { method: 'PUT' })).status).toBe(204);
    }
    await app.produce('/v1/rooms/attic/members/m1', undefined, { method: 'PUT' });
    const sent = await json<{ jobId: string }>(await app.produce('/v1/rooms/lobby/messages', { data: 'hi all' }), 202);

    const first = await json<{ rooms: Array<{ room: string; members: number }>; nextCursor: string }>(
      await app.admin('/admin/rooms?limit=1'),
    );
    expect(first.rooms).toEqual([{ room: 'attic', members: 1 }]);
    const second = await json<{ rooms: unknown[]; nextCursor: null }>(await app.admin(`/admin/rooms?cursor=${first.nextCursor}`));
    expect(second).toEqual({ rooms: [{ room: 'lobby', members: 3 }], nextCursor: null });

    type Room = { members: number; page: Array<{ userId: string }>; fanouts: Array<{ jobId: string; state: string; delivered: number }> };
    const readRoom = async () => json<Room>(await app.admin('/admin/rooms/lobby'));
    await waitUntil(async () => (await readRoom()).fanouts[0]?.state === 'completed', 'the fan-out completes');
    const room = await readRoom();
    expect(room.members).toBe(3);
    expect(room.page.map((m) => m.userId)).toEqual(['m1', 'm2', 'm3']);
    expect(room.fanouts[0]).toMatchObject({ jobId: sent.jobId, state: 'completed', delivered: 3 });
    expect((await app.admin('/admin/rooms/empty-room')).status).toBe(404);
    expect((await app.admin('/admin/rooms?limit=5000')).status).toBe(400);
  });
});

describe('admin page and session', () => {
  it('serves the page without auth, with its assets and a strict CSP', async () => {
    const { app } = node;
    const page = await fetch(`${app.url}/admin`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('/admin/assets/admin.js');
    const js = await fetch(`${app.url}/admin/assets/admin.js`);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${app.url}/admin/assets/secret.txt`)).status).toBe(404);
  });

  it('sets an HttpOnly SameSite=Strict session cookie that opens /admin/jobs, and clears it', async () => {
    const { app } = node;
    const res = await post('/admin/session');
    expect(res.status).toBe(204);
    const cookie = res.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^pb_admin=\d+\.[\w-]+; Path=\/admin; Max-Age=43200; HttpOnly; SameSite=Strict/);
    const value = cookie.split(';')[0]!;
    const board = await fetch(`${app.url}/admin/jobs`, { headers: { cookie: value } });
    expect(board.status).toBe(200);
    expect(await board.text()).toMatch(/<html/i);
    // A forged cookie and the cookie on the API are refused: the API takes the Bearer key only.
    expect((await fetch(`${app.url}/admin/jobs`, { headers: { cookie: 'pb_admin=99999999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } })).status).toBe(401);
    expect((await fetch(`${app.url}/admin/queues`, { headers: { cookie: value } })).status).toBe(401);
    const cleared = await fetch(`${app.url}/admin/session`, { method: 'DELETE' });
    expect(cleared.headers.get('set-cookie')).toMatch(/^pb_admin=; Path=\/admin; Max-Age=0/);
  });
});
