import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { startApp, type TestApp } from '../helpers/start-app.js';
import { startRedis, type TestRedis } from '../helpers/start-redis.js';

// /admin/jobs (bull-board) in headless Chromium: everything it loads comes from this node.
let redis: TestRedis;
let app: TestApp;
let browser: Browser;

beforeAll(async () => {
  redis = await startRedis();
  app = await startApp(redis.url, { DRAIN_INTERVAL_MS: 50 });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await redis?.stop();
});

describe('/admin/jobs', () => {
  it('renders the queues with no request off the machine and no content-security-policy violation', async () => {
    const context = await browser.newContext();
    const origin = new URL(app.url).origin;
    const requests: string[] = [];
    const violations: string[] = [];
    // Anything for another origin is recorded and refused, so the test itself never leaves the machine.
    await context.route(
      (url) => url.origin !== origin,
      (route) => route.abort(),
    );
    context.on('request', (request) => requests.push(request.url()));
    const page = await context.newPage();
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
    const session = await page.request.post(`${app.url}/admin/session`, {
      headers: { authorization: `Bearer ${app.config.ADMIN_KEY}` },
    });
    expect(session.status()).toBe(204);

    const res = await page.goto(`${app.url}/admin/jobs`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toMatch(/default-src 'self'/);
    // The board's own UI, drawn by its scripts: the queue names come from its API.
    for (const queue of ['scheduled', 'fanout', 'housekeeping']) {
      await page.getByText(queue, { exact: true }).first().waitFor({ timeout: 20_000 });
    }
    await page.waitForLoadState('networkidle');

    expect(requests.length).toBeGreaterThan(3); // the page, its scripts and styles, its API calls
    expect(requests.filter((url) => !url.startsWith(`${origin}/`))).toEqual([]);
    expect(violations).toEqual([]);
    await context.close();
  });
});
