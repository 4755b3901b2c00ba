import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { startApp, type Overrides, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// The demo chat's layout in headless Chromium, on a phone and on a desktop, against a real node and Redis.
const root = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = `${root}test-artifacts/`;
const WAIT = { timeout: 20_000 };
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };
// The README's pictures are refreshed on request only, so a test run leaves the checkout as it was.
const UPDATE_DOCS = process.env.UPDATE_DOCS_SCREENSHOTS === '1';
const CONFIG: Overrides = { DEMO: 1, DRAIN_INTERVAL_MS: 50 };

let redis: TestRedis;
let app: TestApp;
let browser: Browser;
const pageErrors: Error[] = [];

beforeAll(async () => {
  ensureClientBuilt(); // the page imports /client/postbox.js
  mkdirSync(ARTIFACTS, { recursive: true });
  redis = await startRedis();
  app = await startApp(redis.url, CONFIG);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await redis?.stop();
});

async function openAs(
  name: string,
  viewport: { width: number; height: number },
  colorScheme: 'light' | 'dark' = 'light',
): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error));
  await page.goto(`${app.url}/demo?user=${name}`);
  await page.locator('#state[data-state="open"]').waitFor(WAIT);
  return page;
}

/** Types a message into the open conversation and waits until it came back on the stream. */
async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.locator('li.msg:not([data-status]) .text', { hasText: text }).last().waitFor(WAIT);
}

async function openDm(page: Page, name: string): Promise<void> {
  await page.fill('#dm-name', name);
  await page.press('#dm-name', 'Enter');
  await page.locator(`button[data-conv="@${name}"].active`).waitFor(WAIT);
}

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
  height: number;
}

interface Layout {
  scrollWidth: number;
  innerWidth: number;
  innerHeight: number;
  /** Rendered elements of the header, sidebar, conversation or message box that reach past the viewport's sides. */
  outside: string[];
  /** On screen and not covered: a tap at its centre reaches it. */
  textReachable: boolean;
  sendReachable: boolean;
  header: Box;
  /** The header's height were it two lines of its text: line height × 2 plus its padding. */
  headerTwoLines: number;
  /** Pairs of the header's items (brand, clock, state, name, sign out) drawn over each other. */
  headerOverlaps: string[];
  sidebar: Box;
  conversation: Box;
  messages: Box;
  composer: Box;
}

// Runs in the page (plain JS: this project's TypeScript has no DOM types).
const MEASURE = `(() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, height: r.height };
  };
  const $ = (selector) => {
    const el = document.querySelector(selector);
    if (!el) throw new Error('no ' + selector + ' on the page');
    return el;
  };
  const outside = [];
  for (const region of ['header.topbar', 'nav.sidebar', 'section.conversation', '#composer']) {
    for (const el of [$(region), ...$(region).querySelectorAll('*')]) {
      const r = box(el);
      if (r.height === 0) continue; // not rendered
      if (r.left < -0.5 || r.right > innerWidth + 0.5) outside.push(el.tagName.toLowerCase() + '#' + el.id + '.' + el.className);
    }
  }
  const reachable = (selector) => {
    const el = $(selector);
    const r = box(el);
    const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    return r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight && hit !== null && el.contains(hit);
  };
  const header = $('header.topbar');
  const style = getComputedStyle(header);
  const items = ['.brand', '.clock', '#state', '#me', '#logout']
    .map((selector) => [selector, box($(selector))])
    .filter(([, r]) => r.height > 0 && r.right > r.left);
  const headerOverlaps = [];
  for (const [i, [a, ra]] of items.entries()) {
    for (const [b, rb] of items.slice(i + 1)) {
      if (ra.left < rb.right - 0.5 && rb.left < ra.right - 0.5 && ra.top < rb.bottom && rb.top < ra.bottom) headerOverlaps.push(a + ' over ' + b);
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth,
    innerHeight,
    outside,
    textReachable: reachable('#text'),
    sendReachable: reachable('#composer button[type="submit"]'),
    header: box(header),
    headerTwoLines: 2 * parseFloat(style.lineHeight) + parseFloat(style.paddingTop) + parseFloat(style.paddingBottom),
    headerOverlaps,
    sidebar: box($('nav.sidebar')),
    conversation: box($('section.conversation')),
    messages: box($('#messages')),
    composer: box($('#composer')),
  };
})()`;

/** What a user would check by eye: nothing sticks out sideways, the message box is on screen, the header is short. */
const measure = (page: Page): Promise<Layout> => page.evaluate<Layout>(MEASURE);

describe('demo chat layout', () => {
  it('fits a 390 px phone: a short header, a strip of conversations, the chat filling the height, the message box at the bottom', async () => {
    // The longest name the demo takes: the header must still hold on one or two lines.
    const longName = 'a-name-of-the-longest-kind-32ch_';
    const friend = await openAs('mina', DESKTOP);
    const page = await openAs(longName, PHONE);
    await say(page, 'Hello from a phone');
    await say(friend, 'Hi! Links without spaces must wrap too: https://example.com/' + 'x'.repeat(150));
    await page.locator('li.msg .text', { hasText: 'https://example.com/' }).waitFor(WAIT);
    await openDm(page, 'mina');
    await say(page, 'A direct message');
    await page.click('button[data-conv="#lobby"]');

    const m = await measure(page);
    expect(m.innerWidth).toBe(PHONE.width);
    expect(m.scrollWidth).toBeLessThanOrEqual(m.innerWidth);
    expect(m.outside).toEqual([]);
    expect(m.textReachable).toBe(true);
    expect(m.sendReachable).toBe(true);
    expect(m.header.height).toBeLessThanOrEqual(m.headerTwoLines);
    expect(m.headerOverlaps).toEqual([]);
    // The strip sits right above the conversation, which runs down to the bottom of the screen.
    expect(m.sidebar.bottom).toBeLessThanOrEqual(m.conversation.top + 1);
    expect(m.conversation.top - m.sidebar.bottom).toBeLessThanOrEqual(1);
    expect(m.sidebar.height).toBeLessThan(80);
    expect(Math.abs(m.conversation.bottom - m.innerHeight)).toBeLessThanOrEqual(1);
    expect(Math.abs(m.composer.bottom - m.innerHeight)).toBeLessThanOrEqual(1);
    expect(m.messages.height).toBeGreaterThan(m.innerHeight / 2);
    await page.screenshot({ path: `${ARTIFACTS}demo-phone.png`, animations: 'disabled' });

    // Signed in state, connection, name and sign-out are all in the header line.
    expect(await page.isVisible('#logout')).toBe(true);
    expect(await page.textContent('#me')).toBe(`@${longName}`);

    // With the keyboard up the layout is shorter (interactive-widget=resizes-content): the box stays on screen.
    await page.setViewportSize({ width: PHONE.width, height: 420 });
    const short = await measure(page);
    expect(short.textReachable).toBe(true);
    expect(short.scrollWidth).toBeLessThanOrEqual(short.innerWidth);
    await page.setViewportSize(PHONE);

    // While the server is away the header says so in words, and still fits; a message typed meanwhile shows, pending.
    const port = Number(new URL(app.url).port);
    await app.close();
    await page.locator('#state[data-state="reconnecting"]').waitFor(WAIT);
    await page.fill('#text', 'Typed in a tunnel');
    await page.press('#text', 'Enter');
    const pending = page.locator('li.msg[data-status="sending"]', { hasText: 'Typed in a tunnel' });
    await pending.waitFor(WAIT);
    const away = await measure(page);
    expect(away.scrollWidth).toBeLessThanOrEqual(away.innerWidth);
    expect(away.outside).toEqual([]);
    expect(away.headerOverlaps).toEqual([]);
    expect(away.header.height).toBeLessThanOrEqual(away.headerTwoLines);
    expect(await page.isVisible('#state-text')).toBe(true);
    await page.screenshot({ path: `${ARTIFACTS}demo-phone-away.png`, animations: 'disabled' });
    app = await startApp(redis.url, { ...CONFIG, PORT: port });
    await pending.waitFor({ state: 'detached', ...WAIT }); // sent, once the server is back

    await page.context().close();
    await friend.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('keeps the two-column layout on a 1280×800 desktop, in light and dark', async () => {
    const nora = await openAs('nora', DESKTOP);
    const omar = await openAs('omar', DESKTOP, 'dark');
    await say(nora, 'Hi everyone!');
    await say(omar, 'Hello Nora, ça va ? Welcome to the lobby.');
    await say(nora, 'Messages arrive the moment they are sent.');
    await openDm(omar, 'nora');
    await say(omar, 'Psst, just between us');
    await nora.locator('button[data-conv="@omar"] .badge', { hasText: '1' }).waitFor(WAIT);

    for (const page of [nora, omar]) {
      const m = await measure(page);
      expect(m.scrollWidth).toBeLessThanOrEqual(m.innerWidth);
      expect(m.outside).toEqual([]);
      expect(m.textReachable).toBe(true);
      expect(m.sendReachable).toBe(true);
      // One line of header; the sidebar beside the conversation, not above it.
      expect(m.header.height).toBeLessThan(m.headerTwoLines - 10);
      expect(m.sidebar.right).toBeLessThanOrEqual(m.conversation.left + 1);
      expect(Math.abs(m.sidebar.top - m.conversation.top)).toBeLessThanOrEqual(1);
    }
    const background = (page: Page) => page.evaluate<string>('getComputedStyle(document.body).backgroundColor');
    expect(await background(nora)).not.toBe(await background(omar));

    await nora.screenshot({ path: `${ARTIFACTS}demo-desktop.png`, animations: 'disabled' });
    await omar.screenshot({ path: `${ARTIFACTS}demo-desktop-dark.png`, animations: 'disabled' });
    if (UPDATE_DOCS) {
      mkdirSync(`${root}docs`, { recursive: true });
      copyFileSync(`${ARTIFACTS}demo-desktop.png`, `${root}docs/demo.png`);
    }
    await nora.context().close();
    await omar.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('shows an unread direct message on the phone strip while the room is open', async () => {
    const pia = await openAs('pia', PHONE);
    const quinn = await openAs('quinn', DESKTOP);
    await say(quinn, 'Pia, the build is green again.');
    await say(pia, 'On my phone, on the train. Merging when I am back!');
    await openDm(quinn, 'pia');
    await say(quinn, 'Lunch at noon?');
    await pia.locator('button[data-conv="@quinn"] .badge', { hasText: '1' }).waitFor(WAIT);
    const m = await measure(pia);
    expect(m.outside).toEqual([]);
    const chip = await pia.locator('button[data-conv="@quinn"]').boundingBox();
    expect(chip).not.toBeNull();
    expect(chip!.x + chip!.width).toBeLessThanOrEqual(PHONE.width);
    expect(chip!.y + chip!.height).toBeLessThanOrEqual(m.sidebar.bottom);
    // The README's phone picture: a conversation a reader can follow.
    await pia.screenshot({ path: `${ARTIFACTS}demo-phone-docs.png`, animations: 'disabled' });
    if (UPDATE_DOCS) {
      mkdirSync(`${root}docs`, { recursive: true });
      copyFileSync(`${ARTIFACTS}demo-phone-docs.png`, `${root}docs/demo-phone.png`);
    }
    await pia.context().close();
    await quinn.context().close();
    expect(pageErrors).toEqual([]);
  });
});
