import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.js';

type SecretName = 'API_KEY' | 'ADMIN_KEY' | 'TOKEN_SECRET';

/**
 * Development keys are kept in `DATA_DIR/dev-keys.json` (mode 600), so a
 * restart keeps the browser's tokens and the admin page's key valid. Only the
 * keys the environment did not set are taken from, or written to, the file.
 * Returns the config with them and whether the file was just written.
 */
export function persistDevelopmentKeys(config: Config, generated: SecretName[]): { config: Config; created: boolean } {
  if (generated.length === 0) return { config, created: false };
  const file = join(config.DATA_DIR, 'dev-keys.json');
  let stored: Partial<Record<SecretName, string>> = {};
  try {
    stored = JSON.parse(readFileSync(file, 'utf8')) as Partial<Record<SecretName, string>>;
  } catch {
    // No file yet (or unreadable): the freshly generated keys are written below.
  }
  const next: Config = { ...config };
  let created = false;
  for (const name of generated) {
    const kept = stored[name];
    if (typeof kept === 'string' && kept.length > 0) {
      next[name] = kept;
    } else {
      stored[name] = config[name];
      created = true;
    }
  }
  if (created) {
    mkdirSync(config.DATA_DIR, { recursive: true });
    writeFileSync(file, JSON.stringify(stored, null, 2) + '\n', { mode: 0o600 });
  }
  return { config: next, created };
}
