import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { failUntilDead } from '../helpers/dead-letters.js';
import { useNode } from '../helpers/use-node.js';
import { waitUntil } from '../helpers/wait-until.js';

// The admin page in headless Chromium, against a real node and Redis.
const root = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = `${root}test-artifacts/`;
const WAIT = { timeout: 20_000 };

let browser: Browser;
const pageErrors: string[] = [];

beforeAll(() => {
  mkdirSync(ARTIFACTS, { recursive: true });
});
const node = useNode({ DRAIN_INTERVAL_MS: 50, ACK_TIMEOUT_MS: 1000, MAX_DELIVERIES: 2 });
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const stream = async (userId: string) => {
  const token = await node.app.token(userId);
  return { sse: await node.app.openStream(userId, { token }), token };
};

/** When the node's rate sampler (one sample a second) last sampled, epoch ms. */
async function lastSample(): Promise<number> {
  const { series } = (await (await node.app.admin('/admin/stats')).json()) as { series: Array<{ t: number }> };
  return series.at(-1)?.t ?? 0;
}

/** Queues that look like a working system: backlogs, a connected user, dead letters, traffic for the chart. */
async function seed(): Promise<void> {
  const { app } = node;
  for (let i = 0; i < 2; i += 1) await app.enqueue('dave', { type: 'report.ready', report: 7700 + i });
  // A page whose handler fails on both: dead letters after MAX_DELIVERIES failures each.
  await failUntilDead(app, 'dave', 2);
  const reader = await stream('erin');
  for (let round = 0; round < 4; round += 1) {
    const sampled = await lastSample();
    const ids: string[] = [];
    for (let i = 0; i < 6; i += 1) ids.push(await app.enqueue('erin', { type: 'chat.message', text: `hello ${round}.${i}` }));
    // By id: one may come twice (ACK_TIMEOUT_MS) before the last arrives.
    const received = () => new Set(reader.sse.events.map((e) => e.id));
    await waitUntil(() => ids.every((id) => received().has(id)), `erin got round ${round}`);
    await app.ack(reader.token, ids);
    // Each round in a sample of its own, so the chart shows traffic over time.
    await waitUntil(async () => (await lastSample()) > sampled, 'the rate sampler takes another sample');
  }
  for (let i = 0; i < 12; i += 1) await app.enqueue('alice', { type: 'invoice.paid', invoice: 1040 + i, amount: 99 });
  for (let i = 0; i < 4; i += 1) await app.enqueue('bob', { type: 'job.progress', job: 'export-17', percent: 25 * i });
  for (let i = 0; i < 7; i += 1) await app.enqueue('carol@example.com', { type: 'alert', level: i % 3 ? 'info' : 'warn' });
}

async function openAdmin(options: { colorScheme?: 'light' | 'dark' } = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, ...options });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('response', (r) => void (r.status() === 404 && pageErrors.push(`404 ${r.url()}`)));
  // A CSP violation or a failed script shows up as a console error.
  page.on('console', (m) => void (m.type() === 'error' && !/401|Unauthorized/.test(m.text()) && pageErrors.push(m.text())));
  await page.goto(`${node.app.url}/admin`);
  return page;
}

async function signIn(page: Page): Promise<void> {
  await page.fill('#key', node.app.config.ADMIN_KEY);
  await page.click('#login-form button[type="submit"]');
  await page.locator('#app').waitFor(WAIT);
}

const cell = (page: Page, userId: string, col: string) => page.locator(`#queues tr[data-user="${userId}"] td[data-col="${col}"]`);

describe('admin page', () => {
  it('asks for the key, shows a user backlog, purges it and shows the count drop', async () => {
    const { app } = node;
    await seed();
    const page = await openAdmin();

    // A wrong key is refused, and the page says so.
    await page.locator('#login').waitFor(WAIT);
    await page.fill('#key', 'not-the-admin-key');
    await page.click('#login-form button[type="submit"]');
    await expect.poll(() => page.textContent('#login-error'), WAIT).toMatch(/invalid credentials|not accepted/);

    await page.fill('#key', node.app.config.ADMIN_KEY);
    await page.click('#login-form button[type="submit"]');
    await page.locator('#app').waitFor(WAIT);

    // Sorted by backlog, with live counts.
    await expect.poll(() => cell(page, 'alice', 'waiting').textContent(), WAIT).toBe('12');
    const order = await page.locator('#queues tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-user')));
    expect(order.slice(0, 3)).toEqual(['alice', 'carol@example.com', 'bob']);
    await expect.poll(() => cell(page, 'dave', 'dead').textContent(), WAIT).toBe('2');
    await expect.poll(() => page.textContent('#t-streams'), WAIT).toBe('1'); // erin's stream

    // Live: a new message shows up without a reload.
    await app.enqueue('bob', { type: 'job.progress', job: 'export-17', percent: 100 });
    await expect.poll(() => cell(page, 'bob', 'waiting').textContent(), WAIT).toBe('5');

    await page.click('#queues tr[data-user="alice"]');
    await expect.poll(() => page.textContent('#d-waiting'), WAIT).toBe('12');
    await page.locator('#d-waiting-rows tr').nth(11).waitFor(WAIT);
    await expect.poll(() => page.locator('#chart polyline').count(), WAIT).toBe(4);
    // The y axis: a unit and round ticks from 0, no "0.00".
    const labels = await page.locator('#chart text').allTextContents();
    expect(labels).toContain('msgs/s');
    const ticks = labels.filter((l) => /^[\d.,]+k?$/.test(l));
    expect(ticks[0]).toBe('0');
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    for (const tick of ticks) expect(tick).toMatch(/^\d[\d,]*$/);
    await page.screenshot({ path: `${ARTIFACTS}admin.png`, fullPage: true });
    // The README's picture is refreshed on request, so a test run leaves the checkout as it was.
    if (!existsSync(`${root}docs/admin.png`) || process.env.UPDATE_DOCS_SCREENSHOTS === '1') {
      mkdirSync(`${root}docs`, { recursive: true });
      copyFileSync(`${ARTIFACTS}admin.png`, `${root}docs/admin.png`);
    }

    // Purge asks first; Cancel changes nothing. A purge would be requested as the dialog
    // closes, before the page's next poll of alice: once that poll is made, none was.
    const deletes: string[] = [];
    const watchDeletes = (r: Request) => void (r.method() === 'DELETE' && deletes.push(r.url()));
    page.on('request', watchDeletes);
    await page.click('#purge');
    await page.locator('#confirm').waitFor(WAIT);
    expect(await page.textContent('#confirm-text')).toContain('alice');
    await page.click('#confirm button[value="cancel"]');
    await page.locator('#confirm').waitFor({ state: 'hidden', ...WAIT });
    await page.waitForRequest((r) => r.method() === 'GET' && r.url().includes('/admin/queues/alice?'), WAIT);
    page.off('request', watchDeletes);
    expect(deletes).toEqual([]);
    expect(await page.textContent('#d-waiting')).toBe('12');

    await page.click('#purge');
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#toast'), WAIT).toContain('Purged alice: 12 waiting');
    await expect.poll(() => page.textContent('#d-waiting'), WAIT).toBe('0');
    // Nothing left: alice leaves the list of queues.
    await expect.poll(() => page.locator('#queues tr[data-user="alice"]').count(), WAIT).toBe(0);
    const res = await app.admin('/admin/queues/alice');
    expect(await res.json()).toMatchObject({ waiting: 0, inflight: 0, dead: 0 });
    await page.screenshot({ path: `${ARTIFACTS}admin-after-purge.png`, fullPage: true });

    // Retry dave's dead letters from the page.
    await page.click('#queues tr[data-user="dave"]');
    await expect.poll(() => page.textContent('#d-dead'), WAIT).toBe('2');
    await page.click('#retry-all');
    await page.click('#confirm-ok');
    await expect.poll(() => cell(page, 'dave', 'waiting').textContent(), WAIT).toBe('2');
    expect(await cell(page, 'dave', 'dead').textContent()).toBe('0');

    // The key is kept for this tab: a reload goes straight to the queues.
    await page.reload();
    await expect.poll(() => cell(page, 'bob', 'waiting').textContent(), WAIT).toBe('5');
    expect(await page.isVisible('#login')).toBe(false);

    // The session cookie opens bull-board from a plain link.
    const jobs = await page.context().newPage();
    const queuesApi = jobs.waitForResponse((r) => r.url().includes('/admin/jobs/api/queues'), WAIT);
    const response = await jobs.goto(`${app.url}/admin/jobs`);
    expect(response?.status()).toBe(200);
    expect((await queuesApi).status()).toBe(200);
    await jobs.getByText('Loading').first().waitFor({ state: 'detached', ...WAIT });
    await jobs.screenshot({ path: `${ARTIFACTS}admin-jobs.png` });

    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('scales the chart to the usual rates: one burst is clipped and marked, not flattening the rest', async () => {
    const page = await openAdmin();
    await signIn(page);
    await page.locator('#chart polyline').first().waitFor(WAIT);
    // Three minutes at about 20 msgs/s with one second at 250, drawn by the page's own code. Drawn and
    // read in one go: the page redraws the chart from the server's numbers every 2 s.
    const drawn = await page.evaluate<{ ticks: string[]; peak: string[]; marks: number; steadyY: number; top: number; bottom: number }>(`(() => {
      const t0 = Date.now() - 180000;
      const series = Array.from({ length: 180 }, (_, i) => {
        const steady = 19 + (i % 3);
        return { t: t0 + i * 1000, enqueued: i === 90 ? 250 : steady, delivered: steady, acked: steady, redelivered: 0, dead: 0 };
      });
      renderChart(series);
      const texts = [...document.querySelectorAll('#chart text')].map((t) => t.textContent);
      const grid = [...document.querySelectorAll('#chart line.grid')].map((l) => Number(l.getAttribute('y1')));
      const acked = document.querySelector('#chart polyline.s-acked').getAttribute('points').split(' ').map((p) => Number(p.split(',')[1]));
      return {
        ticks: texts.filter((t) => /^[\\d.,]+k?$/.test(t)),
        peak: texts.filter((t) => t.startsWith('peak')),
        marks: document.querySelectorAll('#chart .clip-mark').length,
        steadyY: acked[50],
        top: Math.min(...grid),
        bottom: Math.max(...grid),
      };
    })()`);
    expect(drawn.ticks).toEqual(['0', '10', '20', '30']);
    expect(drawn.peak).toEqual(['peak 250 msgs/s ▲']);
    expect(drawn.marks).toBe(1);
    // 20 of 30 msgs/s: two thirds up the plot, not a flat line at the bottom.
    const height = (drawn.bottom - drawn.steadyY) / (drawn.bottom - drawn.top);
    expect(height).toBeGreaterThan(0.6);
    expect(height).toBeLessThan(0.75);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('follows the system colour scheme: dark under prefers-color-scheme: dark', async () => {
    const colours: Record<string, { page: number; card: number; text: number }> = {};
    for (const colorScheme of ['light', 'dark'] as const) {
      const page = await openAdmin({ colorScheme });
      await signIn(page);
      await expect.poll(() => page.locator('#queues tr').count(), WAIT).toBeGreaterThan(0);
      colours[colorScheme] = await page.evaluate<{ page: number; card: number; text: number }>(`(() => {
        // WCAG relative luminance of a computed rgb() colour: 0 is black, 1 is white.
        const luminance = (css) => {
          const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map((v) => {
            const c = Number(v) / 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
          });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const style = (selector) => getComputedStyle(document.querySelector(selector));
        return {
          page: luminance(style('html').backgroundColor),
          card: luminance(style('.card').backgroundColor),
          text: luminance(style('#queues td').color),
        };
      })()`);
      await page.screenshot({ path: `${ARTIFACTS}admin-${colorScheme}.png`, fullPage: true });
      await page.context().close();
    }
    expect(colours.light!.page).toBeGreaterThan(0.8);
    expect(colours.light!.text).toBeLessThan(0.1);
    expect(colours.dark!.page).toBeLessThan(0.05);
    expect(colours.dark!.card).toBeLessThan(0.05);
    expect(colours.dark!.text).toBeGreaterThan(0.6);
    expect(pageErrors).toEqual([]);
  });
});
