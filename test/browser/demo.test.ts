import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { connected, openConversation, POLL, texts, WAIT } from '../helpers/demo-page.js';
import { useNode } from '../helpers/use-node.js';
import { eventually } from '../helpers/wait-until.js';

// The demo chat in headless Chromium, against a real node and Redis.
const root = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = `${root}test-artifacts/`;

let browser: Browser;
const pageErrors: Error[] = [];

beforeAll(() => {
  ensureClientBuilt(); // the page imports /client/postbox.js
  mkdirSync(ARTIFACTS, { recursive: true });
});
const node = useNode({ DEMO: 1, DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 3000 });
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

/** Opens the demo as `name` in its own browser context (its own storage), connected. */
async function openAs(name: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error));
  await page.goto(`${node.app.url}/demo?user=${name}`);
  await connected(page);
  return page;
}

/** Types a message into the open conversation and waits until the backend accepted it. */
async function say(page: Page, text: string): Promise<void> {
  const accepted = page.waitForResponse((r) => r.url().endsWith('/demo/api/send') && r.status() === 202, WAIT);
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await accepted;
}

/** Resolves once nothing of the user's is in flight: what the page showed, it has acked. */
async function settled(userId: string): Promise<void> {
  await eventually(
    async () => ((await (await node.app.admin(`/admin/queues/${userId}`)).json()) as { inflight?: number }).inflight,
    (inflight) => inflight === 0,
    `${userId} to ack everything`,
    POLL,
  );
}

describe('demo chat in a browser', () => {
  it('lets two users chat in a room and by direct message, with a live clock', async () => {
    const alice = await openAs('alice');
    const bob = await openAs('bob');
    expect(await alice.textContent('#conv-title')).toBe('#lobby');

    await say(alice, 'Hi everyone!');
    await texts(bob, '#lobby', ['Hi everyone!']);
    await say(bob, 'Hello Alice, ça va ? Welcome to the lobby.');
    await say(alice, 'Messages arrive the moment they are sent.');
    const lobby = ['Hi everyone!', 'Hello Alice, ça va ? Welcome to the lobby.', 'Messages arrive the moment they are sent.'];
    expect(await texts(alice, '#lobby', lobby)).toEqual(lobby);
    expect(await texts(bob, '#lobby', lobby)).toEqual(lobby);

    await openConversation(alice, '@bob');
    await say(alice, 'Psst, just between us');
    // Bob is reading #lobby: the direct message shows as unread.
    await bob.locator('button[data-conv="@alice"] .badge', { hasText: '1' }).waitFor(WAIT);
    await openConversation(bob, '@alice');
    await say(bob, 'Got it, see you there');
    const dm = ['Psst, just between us', 'Got it, see you there'];
    expect(await texts(alice, '@bob', dm)).toEqual(dm);
    expect(await texts(bob, '@alice', dm)).toEqual(dm);
    // Direct messages stay out of the room.
    expect(await texts(bob, '#lobby')).toEqual(lobby);

    // The server pushes its time every second (a recurring message).
    const clock = () => alice.textContent('#clock');
    const first = await eventually(clock, (t) => t !== '--:--:--', 'the first clock tick', POLL);
    await eventually(clock, (t) => t !== first, 'the next clock tick', POLL);

    await openConversation(alice, '#lobby');
    // The README's pictures come from demo-layout.test.ts.
    await alice.screenshot({ path: `${ARTIFACTS}demo-alice.png` });
    await bob.screenshot({ path: `${ARTIFACTS}demo-bob.png` });
    await alice.context().close();
    await bob.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('shows a page that was closed what it missed when it opens again', async () => {
    const carol = await openAs('carol');
    const dave = await openAs('dave');
    await say(dave, 'Carol, are you there?');
    await texts(carol, '#lobby', ['Carol, are you there?']);
    await settled('carol'); // else it would come again after the reopen: delivery is at least once
    await carol.context().close();

    await openConversation(dave, '@carol');
    const missed = ['Sent while you were away', 'Second one', 'Third one'];
    for (const text of missed) await say(dave, text);
    await openConversation(dave, '#lobby');
    await say(dave, 'Room message while Carol is away');

    const back = await openAs('carol');
    expect(await texts(back, '@dave', missed)).toEqual(missed);
    // What she saw and acked before closing does not come back; what the room got meanwhile does.
    expect(await texts(back, '#lobby', ['Room message while Carol is away'])).toEqual([
      'Room message while Carol is away',
    ]);
    await back.locator('button[data-conv="@dave"] .badge', { hasText: '3' }).waitFor(WAIT);
    await back.screenshot({ path: `${ARTIFACTS}demo-reopened.png` });
    await back.context().close();
    await dave.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('loses no message and shows none twice when the server restarts mid-chat', async () => {
    const erin = await openAs('erin');
    const frank = await openAs('frank');
    await openConversation(erin, '@frank');
    await openConversation(frank, '@erin');
    const before = ['Before the restart 1', 'Before the restart 2', 'Before the restart 3'];
    for (const text of before) await say(frank, text);

    // Stopped right after the sends were accepted: some are delivered and not acked yet, some not delivered.
    const app = node.app;
    await app.close();
    await erin.locator('#state[data-state="reconnecting"]').waitFor(WAIT);
    // Sent while the server is down: shown at once as pending, and retried until the server is back.
    const sending = say(erin, 'Sent while the server was down');
    const pending = erin.locator('li.msg[data-status="sending"]', { hasText: 'Sent while the server was down' });
    await pending.locator('.status', { hasText: 'Retrying' }).waitFor(WAIT);
    await node.restart();
    await sending;
    // Marked sent once the stream brings it back.
    await pending.waitFor({ state: 'detached', ...WAIT });
    await connected(erin);
    await connected(frank);

    await say(frank, 'After the restart');
    const all = [...before, 'Sent while the server was down', 'After the restart'];
    expect(await texts(erin, '@frank', all)).toEqual(all);
    expect(await texts(frank, '@erin', all)).toEqual(all);
    // Each message once, by event id too.
    for (const page of [erin, frank]) {
      const ids = await page.locator('li.msg').evaluateAll((items) => items.map((li) => li.getAttribute('data-id')));
      expect(new Set(ids).size).toBe(ids.length);
    }
    await erin.screenshot({ path: `${ARTIFACTS}demo-after-restart.png` });
    await erin.context().close();
    await frank.context().close();
    expect(pageErrors).toEqual([]);
  });
});
