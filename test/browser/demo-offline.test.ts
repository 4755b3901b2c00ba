import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { connected, openConversation, POLL, texts, WAIT } from '../helpers/demo-page.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

// The demo chat across reloads and while the server is away, in headless Chromium against a real node and Redis.
const root = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = `${root}test-artifacts/`;
// The page gives up after 6 tries, 0.5 + 1 + 2 + 4 + 8 s apart: the failed state needs room above that.
const UNTIL_FAILED = { timeout: 45_000 };
const SEND = '**/demo/api/send';

let redis: TestRedis;
let app: TestApp;
let browser: Browser;
const pageErrors: Error[] = [];

beforeAll(async () => {
  ensureClientBuilt(); // the page imports /client/postbox.js
  mkdirSync(ARTIFACTS, { recursive: true });
  redis = await startRedis();
  app = await startApp(redis.url, { DEMO: 1, DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 3000 });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await redis?.stop();
});

async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  context.on('weberror', (error) => pageErrors.push(error.error()));
  return context;
}

async function openAs(name: string): Promise<Page> {
  const page = await (await newContext()).newPage();
  await page.goto(`${app.url}/demo?user=${name}`);
  await connected(page);
  return page;
}

/** Types a message into the open conversation; it shows as pending at once. */
async function type(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** A message the stream brought back: shown, no longer pending. */
const delivered = (page: Page, text: string) => page.locator('li.msg:not([data-status]) .text', { hasText: text });

async function say(page: Page, text: string): Promise<void> {
  await type(page, text);
  await delivered(page, text).waitFor(WAIT);
}

/** Resolves once nothing of the user's is in flight: what the page showed, it has acked. */
async function settled(userId: string): Promise<void> {
  await eventually(
    async () => ((await (await app.admin(`/admin/queues/${userId}`)).json()) as { inflight?: number; waiting?: number }),
    (q) => q.inflight === 0 && q.waiting === 0,
    `${userId} to ack everything`,
    POLL,
  );
}

/** Makes the page's sends fail as when the server is unreachable; counts the attempts. */
async function refuseSends(page: Page): Promise<{ attempts: () => number }> {
  let attempts = 0;
  await page.route(SEND, (route: Route) => {
    attempts += 1;
    return route.abort('connectionrefused');
  });
  return { attempts: () => attempts };
}

describe('demo chat across reloads and outages', () => {
  it('rejoins on reopening without a click, and a reload keeps the conversation', async () => {
    const context = await newContext();
    const ivy = await context.newPage();
    // The first visit: pick a name and join.
    await ivy.goto(`${app.url}/demo`);
    await ivy.fill('#name', 'ivy');
    await ivy.click('#login-form button[type="submit"]');
    await connected(ivy);
    const jack = await openAs('jack');

    await say(jack, 'Is anyone in the lobby?');
    await say(ivy, 'I am, hi Jack');
    await openConversation(jack, '@ivy');
    await say(jack, 'A word in private');
    const lobby = ['Is anyone in the lobby?', 'I am, hi Jack'];
    expect(await texts(ivy, '#lobby', lobby)).toEqual(lobby);
    expect(await texts(ivy, '@jack', ['A word in private'])).toEqual(['A word in private']);
    // Acked: the server will not send these again, so what a reload shows comes from the page's own history.
    await settled('ivy');

    await ivy.reload();
    expect(await ivy.isVisible('#login')).toBe(false);
    expect(await texts(ivy, '#lobby', lobby)).toEqual(lobby);
    expect(await texts(ivy, '@jack', ['A word in private'])).toEqual(['A word in private']);
    await connected(ivy);

    // Reopened from a bookmark without ?user=: it rejoins as ivy, history and all.
    await ivy.close();
    const back = await context.newPage();
    await back.goto(`${app.url}/demo`);
    await connected(back);
    expect(await back.isVisible('#login')).toBe(false);
    expect(await back.textContent('#me')).toBe('@ivy');
    expect(await texts(back, '#lobby', lobby)).toEqual(lobby);
    // Live after the rejoin, and each message once.
    await openConversation(jack, '#lobby');
    await say(jack, 'Welcome back');
    expect(await texts(back, '#lobby', [...lobby, 'Welcome back'])).toEqual([...lobby, 'Welcome back']);

    // Signing out forgets the name: the next visit asks for one.
    await back.click('#logout');
    await back.locator('#login').waitFor(WAIT);
    await back.goto(`${app.url}/demo`);
    // The page decides on load (a module script runs before the load event goto waits for).
    expect(await back.isVisible('#login')).toBe(true);
    expect(await back.isVisible('#chat')).toBe(false);
    expect(await back.getAttribute('#state', 'data-state')).toBe('idle');

    await context.close();
    await jack.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('shows a message sent while the server is away as pending, and as sent once it is back', async () => {
    const kate = await openAs('kate');
    const leo = await openAs('leo');
    await openConversation(kate, '@leo');
    const refused = await refuseSends(kate);

    await type(kate, 'Are you there?');
    const pending = kate.locator('li.msg[data-status="sending"]', { hasText: 'Are you there?' });
    await pending.waitFor(WAIT);
    expect(await kate.inputValue('#text')).toBe('');
    // Tried again, with the same message id, while the send is refused.
    await eventually(async () => refused.attempts(), (n) => n >= 2, 'a second attempt', POLL);
    await pending.locator('.status', { hasText: 'Retrying' }).waitFor(WAIT);
    await kate.screenshot({ path: `${ARTIFACTS}demo-pending.png` });

    await kate.unroute(SEND);
    await delivered(kate, 'Are you there?').waitFor(WAIT);
    expect(await texts(leo, '@kate', ['Are you there?'])).toEqual(['Are you there?']);
    expect(await texts(kate, '@leo', ['Are you there?'])).toEqual(['Are you there?']);
    expect(await kate.locator('li.msg[data-status]').count()).toBe(0);

    await kate.context().close();
    await leo.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('marks a send that keeps failing as failed, keeps it over a reload, and its Retry button sends it', async () => {
    const mia = await openAs('mia');
    const ned = await openAs('ned');
    await openConversation(mia, '@ned');
    await say(mia, 'First, while all is well');
    const refused = await refuseSends(mia);

    await type(mia, 'Second, into the void');
    const failed = mia.locator('li.msg[data-status="failed"]', { hasText: 'Second, into the void' });
    await failed.waitFor(UNTIL_FAILED);
    expect(refused.attempts()).toBe(6);
    await failed.locator('button.retry').waitFor(WAIT);
    await mia.screenshot({ path: `${ARTIFACTS}demo-failed.png` });

    // Still there after a reload: the outbox lives in localStorage too.
    await mia.reload();
    await connected(mia);
    await failed.waitFor(WAIT);
    expect(await texts(mia, '@ned', ['First, while all is well', 'Second, into the void'])).toEqual([
      'First, while all is well',
      'Second, into the void',
    ]);

    await mia.unroute(SEND);
    await failed.locator('button.retry').click();
    await delivered(mia, 'Second, into the void').waitFor(WAIT);
    const both = ['First, while all is well', 'Second, into the void'];
    expect(await texts(ned, '@mia', both)).toEqual(both);
    expect(await mia.locator('li.msg[data-status]').count()).toBe(0);

    await mia.context().close();
    await ned.context().close();
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
