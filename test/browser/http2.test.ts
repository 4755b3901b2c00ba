import { mkdtempSync, rmSync } from 'node:fs';
import type { ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { h2Connect, h2Enqueue, h2Token, selfSignedCert, type TestCert } from '../helpers/h2-client.js';
import { useNode } from '../helpers/use-node.js';

// 8 EventSources in one Chromium page against a TLS node: over HTTP/1.1 the 7th would never open.
let dir: string;
let cert: TestCert;
let browser: Browser;
let producer: ClientHttp2Session;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'postbox-tls-'));
  cert = selfSignedCert(dir);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});
// The overrides are read when the node starts, after the certificate above exists.
const node = useNode(() => ({ TLS_CERT_FILE: cert.TLS_CERT_FILE, TLS_KEY_FILE: cert.TLS_KEY_FILE, DRAIN_INTERVAL_MS: 50 }));
beforeAll(async () => {
  producer = await h2Connect(node.app.url, cert.ca);
  // The test certificate is self-signed; the browser still negotiates h2 over TLS.
  browser = await launchChromium(['--ignore-certificate-errors']);
});
afterAll(async () => {
  await browser?.close();
  producer?.destroy();
});

/** Opens 8 EventSources in the page; `tabs` keeps how many opened and the event ids each received. */
const openTabs = (streamUrl: string) => `
  window.tabs = { open: 0, received: [] };
  for (let i = 0; i < 8; i += 1) {
    const ids = [];
    window.tabs.received.push(ids);
    const source = new EventSource(${JSON.stringify(streamUrl)});
    source.onopen = () => (window.tabs.open += 1);
    source.onmessage = (event) => ids.push(event.lastEventId);
  }`;

it('keeps 8 EventSources of one page open over HTTP/2, and each gets the message', async () => {
  const { app } = node;
  const token = await h2Token(producer, app.config.API_KEY, 'browser-tabs');
  const page = await browser.newPage();
  await page.goto(`${app.url}/healthz`);
  expect(await page.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol')).toBe('h2');

  await page.evaluate(openTabs(`/v1/stream?token=${encodeURIComponent(token)}`));
  const tabs = () => page.evaluate('window.tabs') as Promise<{ open: number; received: string[][] }>;
  await expect.poll(async () => (await tabs()).open, { timeout: 20_000 }).toBe(8);
  expect(app.postbox.hub.count('browser-tabs')).toBe(8);

  const id = await h2Enqueue(producer, app.config.API_KEY, 'browser-tabs', { text: 'hello, every tab' });
  await expect.poll(async () => (await tabs()).received, { timeout: 20_000 }).toEqual(Array(8).fill([id]));
  await page.close();
});
