import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Where the Debian package (which .ci/run installs) puts Chromium. */
export const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/**
 * Headless Chromium for a browser test, with `args` after the usual ones. Browser tests never
 * skip: without Chromium this throws, saying how to install it. Close it in afterAll.
 */
export async function launchChromium(args: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run apt-get install -y chromium (browser tests never skip)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: [...ARGS, ...args] });
}
