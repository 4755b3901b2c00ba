import type { Page } from 'playwright-core';
import { eventually } from './wait-until.js';

// What the browser tests of the demo chat (src/http/demo-page) do on a page, by its markup.

/** How long a browser test waits for the page, ms (playwright's option). */
export const WAIT = { timeout: 20_000 };
/** The same wait, polled (eventually, waitUntil). */
export const POLL = { timeoutMs: WAIT.timeout, intervalMs: 50 };

/** Resolves once the page shows its stream open. */
export const connected = (page: Page) => page.locator('#state[data-state="open"]').waitFor(WAIT);

/** Opens a conversation: a room by its button, or `@name`, started from the direct-message box when new. */
export async function openConversation(page: Page, key: string): Promise<void> {
  if (key.startsWith('@') && (await page.locator(`button[data-conv="${key}"]`).count()) === 0) {
    await page.fill('#dm-name', key.slice(1));
    await page.press('#dm-name', 'Enter');
  }
  await page.click(`button[data-conv="${key}"]`);
}

/** The texts shown in one conversation, in order, once they include all of `expected`. */
export function texts(page: Page, conv: string, expected: string[] = []): Promise<string[]> {
  return eventually(
    () => page.locator(`li.msg[data-conv="${conv}"] .text`).allTextContents(),
    (shown) => expected.every((t) => shown.includes(t)),
    `${expected.join(' | ')} in ${conv}`,
    POLL,
  );
}
