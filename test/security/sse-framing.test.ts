import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, sleep, type SseReader } from '../helpers/read-sse.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// What a producer sends must arrive as exactly one event, with its own id, whatever the data:
// read here by eventsource-parser, which follows WHATWG HTML §9.2.6 (CR, LF and CRLF end lines;
// `data:`, `id:`, `event:`, `retry:` fields; a blank line dispatches).
let redis: TestRedis;
let app: TestApp;
const readers: SseReader[] = [];

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50, RETRY_MS: 2000 });
});
afterAll(async () => {
  for (const r of readers) r.close();
  await app?.close();
  await redis?.stop();
});

const HOSTILE: string[] = [
  'line\nbreak',
  'carriage\rreturn',
  'crlf\r\nend',
  '\n\ndata: injected\n\n',
  '\r\rid: 999999999999999-0\r\r',
  'x\nevent: postbox.acked\ndata: {"ids":["1-0"]}\n\n',
  'retry: 1\n\n',
  ': comment\n',
  'id: 1-1\nid\n',
  '\uFEFFbom at the start',
  'nul\u0000inside',
  'line\u2028separator\u2029paragraph',
  '\u0085next line (NEL)',
  'lone \uD800 surrogate',
  '\uDFFF',
  'emoji 👍🏽 and 中文',
  '"quoted" \\backslash\\ /slash/',
  '</script><script>alert(1)</script>',
  'data:',
  '',
  ' '.repeat(1000),
  'x'.repeat(60_000),
];

async function streamOf(userId: string): Promise<SseReader> {
  const reader = await openSse(app.streamUrl(await app.token(userId)));
  readers.push(reader);
  expect(reader.status).toBe(200);
  return reader;
}

const messages = (reader: SseReader) => reader.events.filter((e) => !e.event.startsWith('postbox.'));

/** Acks what `reader` received as a page does, until `count` messages came, so the in-flight window moves on. */
async function readAll(reader: SseReader, userId: string, count: number): Promise<void> {
  const token = await app.token(userId);
  const deadline = Date.now() + 20_000;
  let acked = 0;
  while (acked < count) {
    if (Date.now() > deadline) throw new Error(`${userId}: ${acked} of ${count} messages within 20 s`);
    const got = messages(reader);
    if (got.length > acked) {
      expect((await app.ack(token, got.slice(acked).map((e) => e.id as string))).status).toBe(200);
      acked = got.length;
    } else {
      await sleep(20);
    }
  }
}

describe('SSE framing of hostile data', () => {
  it('delivers each hostile string as one event, its data intact, with its own id and no injected field', async () => {
    const reader = await streamOf('hostile');
    const values: unknown[] = [...HOSTILE, Object.fromEntries(HOSTILE.slice(0, 12).map((s, i) => [s, i])), HOSTILE];
    const ids: string[] = [];
    for (const value of values) ids.push(await app.enqueue('hostile', value));
    await readAll(reader, 'hostile', values.length);
    const got = messages(reader);
    expect(got.map((e) => e.id)).toEqual(ids);
    expect(got.map((e) => e.event)).toEqual(values.map(() => 'message'));
    // JSON.stringify escapes CR and LF, and lone surrogates as \u escapes (ES2019 well-formed stringify).
    expect(got.map((e) => JSON.parse(e.data) as unknown)).toEqual(values.map((v) => JSON.parse(JSON.stringify(v)) as unknown));
    expect(reader.retry).toBe(2000);
    // Acked by this very tab: no other tab, so no control events at all.
    expect(reader.events.filter((e) => e.event.startsWith('postbox.'))).toEqual([]);
  });

  it('refuses event names and resume ids that could break the framing or pass for the server\'s own events', async () => {
    for (const event of ['a\nb', 'a\rb', 'a b', 'data: x', 'postbox.acked', 'Postbox.expired', 'é', '', 'x'.repeat(65)]) {
      for (const [path, body] of [
        ['/v1/users/hostile-events/messages', { data: 1, event }],
        ['/v1/messages', { messages: [{ userId: 'hostile-events', data: 1, event }] }],
      ] as const) {
        const res = await app.produce(path, body);
        expect(`${path} ${JSON.stringify(event)} ${res.status}`).toBe(`${path} ${JSON.stringify(event)} 400`);
      }
    }
    const token = await app.token('hostile-events');
    for (const lastEventId of ['1-0\nevent: x', '1-0\r', 'abc', '-1-0', '1-0 ']) {
      const res = await fetch(`${app.streamUrl(token)}&lastEventId=${encodeURIComponent(lastEventId)}`);
      expect(`${JSON.stringify(lastEventId)} ${res.status}`).toBe(`${JSON.stringify(lastEventId)} 400`);
    }
    expect(app.postbox.hub.count('hostile-events')).toBe(0);
    expect(((await (await app.admin('/admin/queues/hostile-events')).json()) as { error?: { code: string } }).error?.code).toBe(
      'PB_ERR_USER_NOT_FOUND',
    );
  });

  it('any JSON value a producer sends arrives equal to what JSON.parse(JSON.stringify(it)) gives (property)', async () => {
    const reader = await streamOf('any-json');
    const expected: unknown[] = [];
    const ids: string[] = [];
    // Three batches of 200 arbitrary values: strings of any code units, deep and wide values.
    for (let run = 0; run < 3; run += 1) {
      const values = fc.sample(fc.jsonValue({ maxDepth: 6, stringUnit: 'binary' }), { numRuns: 200, seed: 4242 + run });
      const res = await app.produce('/v1/messages', { messages: values.map((data) => ({ userId: 'any-json', data })) });
      expect(res.status).toBe(201);
      ids.push(...((await res.json()) as { ids: string[] }).ids);
      expected.push(...values.map((v) => JSON.parse(JSON.stringify(v)) as unknown));
      await readAll(reader, 'any-json', ids.length);
    }
    const got = messages(reader);
    expect(got.map((e) => e.id)).toEqual(ids);
    expect(got.map((e) => JSON.parse(e.data) as unknown)).toEqual(expected);
    for (const e of got) expect(e.data).not.toMatch(/[\r\n]/);
  });
});
