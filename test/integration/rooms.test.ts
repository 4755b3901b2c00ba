import { describe, expect, it } from 'vitest';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

const node = useNode({ DRAIN_INTERVAL_MS: 50, JOB_LOCK_MS: 1000, FANOUT_CHUNK_SIZE: 7 });

const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

async function waitForJob(jobId: string): Promise<{ returnvalue: unknown; progress: unknown }> {
  const queue = node.app.queue('fanout');
  await waitUntil(async () => (await (await queue.getJob(jobId))?.getState()) === 'completed', `fan-out job ${jobId} completes`);
  const job = (await queue.getJob(jobId))!;
  return { returnvalue: job.returnvalue, progress: job.progress };
}

describe('rooms', () => {
  it('adds, pages and removes members', async () => {
    const { app } = node;
    for (const u of ['carol', 'alice', 'bob']) expect((await app.call('PUT', `/v1/rooms/team:1/members/${u}`)).status).toBe(204);
    // Adding again changes nothing.
    expect((await app.call('PUT', '/v1/rooms/team:1/members/alice')).status).toBe(204);
    const all = await app.call('GET', '/v1/rooms/team:1/members');
    expect(await all.json()).toEqual({ room: 'team:1', count: 3, members: ['alice', 'bob', 'carol'], nextCursor: null });

    const first = (await (await app.call('GET', '/v1/rooms/team:1/members?limit=2')).json()) as {
      members: string[];
      nextCursor: string;
    };
    expect(first).toMatchObject({ members: ['alice', 'bob'], nextCursor: 'bob' });
    const second = await app.call('GET', `/v1/rooms/team:1/members?limit=2&cursor=${first.nextCursor}`);
    expect(await second.json()).toMatchObject({ members: ['carol'], nextCursor: null });
    // A last page that is exactly full has no cursor after it.
    const exact = await app.call('GET', '/v1/rooms/team:1/members?limit=3');
    expect(await exact.json()).toMatchObject({ members: ['alice', 'bob', 'carol'], nextCursor: null });

    expect((await app.call('DELETE', '/v1/rooms/team:1/members/bob')).status).toBe(204);
    const again = await app.call('DELETE', '/v1/rooms/team:1/members/bob');
    expect(again.status).toBe(404);
    expect(await errorCode(again)).toBe('PB_ERR_NOT_A_MEMBER');
    expect(await (await app.call('GET', '/v1/rooms/team:1/members')).json()).toMatchObject({ members: ['alice', 'carol'] });

    const bulk = await app.call('POST', '/v1/rooms/team:1/members', { userIds: ['dave', 'erin', 'alice'] });
    expect(await bulk.json()).toEqual({ added: 2 });
    expect(await (await app.call('GET', '/v1/rooms/team:1/members')).json()).toMatchObject({ count: 4 });

    // The last member leaving removes the room.
    for (const u of ['alice', 'carol', 'dave', 'erin']) await app.call('DELETE', `/v1/rooms/team:1/members/${u}`);
    const gone = await app.call('GET', '/v1/rooms/team:1/members');
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe('PB_ERR_ROOM_NOT_FOUND');
  });

  it('fans a message out to online and offline members exactly once each, except the sender', async () => {
    const { app } = node;
    const members = Array.from({ length: 30 }, (_, i) => `member-${String(i).padStart(2, '0')}`);
    await app.call('POST', '/v1/rooms/lobby/members', { userIds: members });
    const online = await app.openStream('member-03');
    const sender = await app.openStream('member-00');

    const res = await app.call('POST', '/v1/rooms/lobby/messages', {
      event: 'chat',
      data: { text: 'hello room' },
      exceptUserId: 'member-00',
    });
    expect(res.status).toBe(202);
    const { jobId, members: count } = (await res.json()) as { jobId: string; members: number };
    expect(count).toBe(29);

    const [event] = await online.waitFor(1);
    expect(event).toMatchObject({ event: 'chat', data: '{"text":"hello room"}' });
    const done = await waitForJob(jobId);
    expect(done.returnvalue).toEqual({ delivered: 29, skipped: 0, expired: false });
    expect(done.progress).toBe(100);

    // Members offline during the send get it when they connect.
    const late = await app.openStream('member-29');
    await late.waitFor(1);
    expect(late.events[0]!.data).toBe('{"text":"hello room"}');

    // A direct message to each of the three after the fan-out: what a stream got before it is
    // all the room sent it (one mailbox, in order), with no window to wait out.
    for (const user of ['member-03', 'member-00', 'member-29']) await app.enqueue(user, 'after', { event: 'direct' });
    await Promise.all([online.waitFor(2), sender.waitFor(1), late.waitFor(2)]);
    expect(online.events.map((e) => e.event)).toEqual(['chat', 'direct']);
    expect(late.events.map((e) => e.event)).toEqual(['chat', 'direct']);
    expect(sender.events.map((e) => e.event)).toEqual(['direct']);

    // Every other member's mailbox held it exactly once; the sender's held nothing (but the direct one).
    const client = node.redis.client();
    const lengths = await Promise.all(members.map((m) => client.xlen(`pb:{${m}}:m`)));
    expect(lengths[0]).toBe(1);
    expect(lengths.slice(1)).toEqual(members.slice(1).map((m) => (m === 'member-03' || m === 'member-29' ? 2 : 1)));
    online.close();
    sender.close();
    late.close();
  });

  it('treats a repeated room message with the same key as one message', async () => {
    const { app } = node;
    await app.call('POST', '/v1/rooms/retry-room/members', { userIds: ['r1', 'r2', 'r3'] });
    const send = () => app.call('POST', '/v1/rooms/retry-room/messages', { data: 'once', key: 'post-7' });
    const first = (await (await send()).json()) as { jobId: string };
    await waitForJob(first.jobId);
    // The producer retries after a timeout: same job, no second delivery.
    const again = await send();
    expect(again.status).toBe(202);
    expect(((await again.json()) as { jobId: string }).jobId).toBe(first.jobId);
    // The same key in another room is another message.
    await app.call('PUT', '/v1/rooms/other-room/members/r1');
    const other = (await (await app.call('POST', '/v1/rooms/other-room/messages', { data: 'x', key: 'post-7' })).json()) as {
      jobId: string;
    };
    expect(other.jobId).not.toBe(first.jobId);
    await waitForJob(other.jobId);
    const client = node.redis.client();
    expect(await Promise.all(['r1', 'r2', 'r3'].map((u) => client.xlen(`pb:{${u}}:m`)))).toEqual([2, 1, 1]);
  });

  it('does not deliver a room message past its ttlMs', async () => {
    const { app } = node;
    await app.call('PUT', '/v1/rooms/flash/members/flash-user');
    const res = await app.call('POST', '/v1/rooms/flash/messages', { data: 'brief', ttlMs: 300 });
    const answeredAt = Date.now();
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    await waitForJob(jobId);
    // It expires 300 ms after the node took it, which was before it answered; the node reads this clock.
    await waitUntil(() => Date.now() > answeredAt + 300, 'the room message is past its ttlMs');
    const sse = await app.openStream('flash-user');
    // A direct message after it: had the room message been delivered, it would have come first.
    const direct = await app.enqueue('flash-user', 'direct');
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe(direct);
    sse.close();
  });

  it('rejects bad room input with 4xx and changes nothing', async () => {
    const { app } = node;
    const unknown = await app.call('POST', '/v1/rooms/nobody-here/messages', { data: 1 });
    expect(unknown.status).toBe(404);
    expect(await errorCode(unknown)).toBe('PB_ERR_ROOM_NOT_FOUND');
    expect((await app.call('GET', '/v1/rooms/nobody-here/members')).status).toBe(404);
    expect((await app.call('DELETE', '/v1/rooms/nobody-here/members/x')).status).toBe(404);

    for (const room of ['bad%20room', 'a%2Fb', 'x'.repeat(129)]) {
      const put = await app.call('PUT', `/v1/rooms/${room}/members/u1`);
      expect(put.status).toBe(400);
      expect(await errorCode(put)).toBe('PB_ERR_VALIDATION');
      expect((await app.call('POST', `/v1/rooms/${room}/messages`, { data: 1 })).status).toBe(400);
    }
    expect((await app.call('PUT', '/v1/rooms/ok-room/members/bad%0Auser')).status).toBe(400);
    expect((await app.call('GET', '/v1/rooms/ok-room/members')).status).toBe(404);

    await app.call('PUT', '/v1/rooms/strict-room/members/u1');
    for (const body of [{}, { data: 1, event: 'bad event' }, { data: 1, extra: 1 }, { data: 1, exceptUserId: 'no good' }]) {
      expect((await app.call('POST', '/v1/rooms/strict-room/messages', body)).status).toBe(400);
    }
    expect((await app.call('GET', '/v1/rooms/strict-room/members?limit=1001')).status).toBe(400);
    expect((await app.call('GET', '/v1/rooms/strict-room/members?limit=0')).status).toBe(400);
    expect((await app.call('POST', '/v1/rooms/strict-room/members', { userIds: [] })).status).toBe(400);
    const big = await app.call('POST', '/v1/rooms/strict-room/messages', { data: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    const noKey = await fetch(`${app.url}/v1/rooms/strict-room/members/u2`, { method: 'PUT' });
    expect(noKey.status).toBe(401);
    expect(await (await app.call('GET', '/v1/rooms/strict-room/members')).json()).toMatchObject({ members: ['u1'] });
    const queue = app.queue('fanout');
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
    expect(counts).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0 });
  });
});
