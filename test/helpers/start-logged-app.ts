import { pino } from 'pino';
import { testConfig } from '../../src/config.js';
import { createPostbox } from '../../src/postbox.js';
import { buildClient, type Overrides, type TestApp } from './start-app.js';

/** One parsed pino line. */
export interface LogLine {
  level: number;
  msg: string;
  err?: { message?: string; stack?: string };
  [field: string]: unknown;
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** startApp, with everything the node logs (from `level` up) kept for the test to read. */
export async function startLoggedApp(
  redisUrl: string,
  overrides: Overrides = {},
  level: 'debug' | 'info' | 'warn' = 'info',
): Promise<TestApp & { logs: () => LogLine[] }> {
  const config = testConfig({
    API_KEY: 'test-api-key-0123456789',
    ADMIN_KEY: 'test-admin-key-0123456789',
    TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
    ...overrides,
  });
  const lines: LogLine[] = [];
  const logger = pino({ level }, { write: (text: string) => void lines.push(JSON.parse(text) as LogLine) });
  const node = await createPostbox(config, { redisUrl, logger });
  const url = await node.listen(Number(overrides.PORT ?? 0), '127.0.0.1');
  return { ...buildClient(node, config, url), logs: () => lines };
}
