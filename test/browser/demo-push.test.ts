import type { Browser, BrowserContext, Page, Worker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuilt } from '../helpers/built-client.js';
import { launchChromium } from '../helpers/chromium.js';
import { startPushService, type TestPushService } from '../helpers/push-service.js';
import { startPushApp, type PushTestApp } from '../helpers/start-push-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';
import { eventually } from '../helpers/wait-until.js';

/*
 * The demo's "notify me when closed" in headless Chromium. Chromium's own push service cannot be
 * reached offline (and Playwright's contexts refuse the Push API), so the browser cannot make a
 * real PushSubscription: the switch must say so and go back off. The rest is real: the demo's
 * backend sends a direct message with a push option, postbox pushes it to the loopback test push
 * service (a subscription stored for the user through the API), and the plaintext the service
 * decrypted is delivered to the demo's service worker as a push event (DevTools protocol).
 */

const WAIT = { timeout: 20_000 };
const PHONE = { width: 390, height: 760 };

let redis: TestRedis;
let push: TestPushService;
let app: PushTestApp;
let browser: Browser;
const pageErrors: Error[] = [];

interface WorkerGlobals {
  registration: { getNotifications(): Promise<Array<{ title: string; body: string; data: unknown }>> };
}

beforeAll(async () => {
  ensureClientBuilt();
  redis = await startRedis();
  push = await startPushService();
  app = await startPushApp(redis.url, { ca: push.ca, overrides: { DEMO: 1, DRAIN_INTERVAL_MS: 50, PUSH_AFTER_MS: 200 } });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await push?.close();
  await redis?.stop();
});

async function openDemo(context: BrowserContext, name: string): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error));
  await page.goto(`${app.url}/demo?user=${name}`);
  await page.locator('#state[data-state="open"]').waitFor(WAIT);
  return page;
}

function notifications(worker: Worker): Promise<Array<{ title: string; body: string }>> {
  return worker.evaluate(async () => {
    const shown = await (globalThis as unknown as WorkerGlobals).registration.getNotifications();
    return shown.map((n) => ({ title: n.title, body: n.body }));
  });
}

describe('the demo with Web Push on', () => {
  it('shows the switch on a phone, beside the conversation title, and turns it back off when the browser cannot subscribe', async () => {
    const context = await browser.newContext({ viewport: PHONE });
    await context.grantPermissions(['notifications'], { origin: app.url });
    const page = await openDemo(context, 'pia');
    const toggle = page.locator('#notify-switch');
    await toggle.waitFor({ state: 'visible', ...WAIT });
    const [box, title] = await Promise.all([toggle.boundingBox(), page.locator('#conv-title').boundingBox()]);
    expect(box!.x + box!.width).toBeLessThanOrEqual(PHONE.width);
    expect(box!.x).toBeGreaterThanOrEqual(title!.x + title!.width); // after the title, not over it
    const scrollWidth = await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);
    expect(scrollWidth).toBeLessThanOrEqual(PHONE.width);

    await page.click('#notify');
    await page.locator('#notify:not([disabled])').waitFor(WAIT);
    expect(await page.isChecked('#notify')).toBe(false);
    expect(await toggle.getAttribute('title')).toMatch(/^Web Push is not available here: /);
    await context.close();
  });

  it('a direct message to a closed tab comes as a notification, which closes when the tab opens and shows it', async () => {
    const nia = await browser.newContext();
    await nia.grantPermissions(['notifications'], { origin: app.url });
    const first = await openDemo(nia, 'nia');
    await first.locator('#notify-switch').waitFor({ state: 'visible', ...WAIT }); // the helper is registered for /demo
    const worker = nia.serviceWorkers()[0] ?? (await nia.waitForEvent('serviceworker', WAIT));
    // A page of the origin outside /demo, to hold the DevTools session while no demo tab is open.
    const holder = await nia.newPage();
    await holder.goto(`${app.url}/healthz`);
    const cdp = await nia.newCDPSession(holder);
    const registrations = new Map<string, string>();
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: list }) => {
      for (const r of list) if (!r.isDeleted) registrations.set(r.scopeURL, r.registrationId);
    });
    await cdp.send('ServiceWorker.enable');
    await first.close();

    const subscription = push.subscribe();
    await app.subscribedUser('nia', subscription);
    const omarContext = await browser.newContext();
    const omar = await openDemo(omarContext, 'omar');
    await omar.fill('#dm-name', 'nia');
    await omar.press('#dm-name', 'Enter');
    await omar.fill('#text', 'Are you coming tonight?');
    await omar.press('#text', 'Enter');

    const got = await push.waitFor((all) => all.some((r) => r.subscriptionId === push.idOf(subscription) && r.status === 201), WAIT.timeout);
    const plaintext = got.find((r) => r.subscriptionId === push.idOf(subscription))!.payload!;
    expect(JSON.parse(plaintext)).toMatchObject({ title: 'omar', body: 'Are you coming tonight?', event: 'chat' });
    const registrationId = await eventually(async () => registrations.get(`${app.url}/demo`), (id) => id !== undefined, 'the /demo registration');
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: app.url, registrationId: registrationId!, data: plaintext });
    expect(await eventually(() => notifications(worker), (list) => list.length === 1, 'one notification')).toEqual([{ title: 'omar', body: 'Are you coming tonight?' }]);

    // Nia opens the demo instead of the notification: the stream brings the message, the notification goes.
    const back = await openDemo(nia, 'nia');
    await back.click('button[data-conv="@omar"]');
    await back.locator('li.msg .text', { hasText: 'Are you coming tonight?' }).waitFor(WAIT);
    await eventually(() => notifications(worker), (list) => list.length === 0, 'the notification gone');
    expect(pageErrors).toEqual([]);
    await Promise.all([nia.close(), omarContext.close()]);
  });
});
