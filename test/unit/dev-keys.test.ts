import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { persistDevelopmentKeys } from '../../src/dev-keys.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fresh(env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'postbox-keys-'));
  dirs.push(dir);
  return { dir, load: () => loadConfig({ DATA_DIR: dir, ...env }) };
}

describe('development keys', () => {
  it('keeps generated keys across starts in DATA_DIR/dev-keys.json, readable by the owner only', () => {
    const { dir, load } = fresh();
    const first = load();
    const a = persistDevelopmentKeys(first.config, first.generated);
    expect(a.created).toBe(true);
    expect(statSync(join(dir, 'dev-keys.json')).mode & 0o777).toBe(0o600);
    const second = load();
    expect(second.config.API_KEY).not.toBe(a.config.API_KEY); // loadConfig alone generates anew
    const b = persistDevelopmentKeys(second.config, second.generated);
    expect(b.created).toBe(false);
    expect(b.config.API_KEY).toBe(a.config.API_KEY);
    expect(b.config.ADMIN_KEY).toBe(a.config.ADMIN_KEY);
    expect(b.config.TOKEN_SECRET).toBe(a.config.TOKEN_SECRET);
  });

  it('leaves keys set in the environment alone', () => {
    const { load } = fresh({ API_KEY: 'from-the-environment-1234' });
    const { config, generated } = load();
    expect(generated).toEqual(['ADMIN_KEY', 'TOKEN_SECRET']);
    expect(persistDevelopmentKeys(config, generated).config.API_KEY).toBe('from-the-environment-1234');
  });

  it('writes nothing when every key is set', () => {
    const { load } = fresh({ API_KEY: 'a'.repeat(16), ADMIN_KEY: 'b'.repeat(16), TOKEN_SECRET: 'c'.repeat(32) });
    const { config, generated } = load();
    expect(persistDevelopmentKeys(config, generated)).toEqual({ config, created: false });
  });
});
