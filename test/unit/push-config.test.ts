import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import webpush from 'web-push';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, vapidPairMatches } from '../../src/config.js';
import { persistDevelopmentVapidKeys } from '../../src/dev-keys.js';

const secrets = { API_KEY: 'a'.repeat(16), ADMIN_KEY: 'b'.repeat(16), TOKEN_SECRET: 'c'.repeat(32) };
const keys = webpush.generateVAPIDKeys();
const vapid = { VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: keys.privateKey, VAPID_SUBJECT: 'mailto:ops@example.com' };

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('Web Push configuration', () => {
  it('is on with the three VAPID_* set, in production too', () => {
    const { config } = loadConfig({ NODE_ENV: 'production', ...secrets, ...vapid });
    expect(config).toMatchObject({ PUSH_ENABLED: true, VAPID_GENERATED: false, ...vapid, PUSH_AFTER_MS: 10_000, PUSH_MAX_SUBSCRIPTIONS_PER_USER: 10 });
    expect(config.PUSH_ALLOW_PRIVATE_ENDPOINTS).toBe(false);
  });

  it('is off with none of them in production and in tests', () => {
    expect(loadConfig({ NODE_ENV: 'production', ...secrets }).config.PUSH_ENABLED).toBe(false);
    expect(loadConfig({ NODE_ENV: 'test' }).config.PUSH_ENABLED).toBe(false);
  });

  it('refuses to start with only some of them, naming what is missing', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', ...secrets, VAPID_PUBLIC_KEY: keys.publicKey })).toThrow(
      /VAPID_PRIVATE_KEY, VAPID_SUBJECT missing/,
    );
    expect(() => loadConfig({ ...vapid, VAPID_SUBJECT: undefined })).toThrow(ConfigError);
  });

  it('refuses keys that are not a pair, and a subject that is not mailto: or https:', () => {
    const other = webpush.generateVAPIDKeys();
    expect(() => loadConfig({ ...vapid, VAPID_PRIVATE_KEY: other.privateKey })).toThrow(/not the public key/);
    expect(() => loadConfig({ ...vapid, VAPID_SUBJECT: 'ops@example.com' })).toThrow(/VAPID_SUBJECT/);
    expect(() => loadConfig({ ...vapid, VAPID_SUBJECT: 'http://example.com' })).toThrow(/VAPID_SUBJECT/);
  });

  it('generates a pair in development, which web-push accepts', () => {
    const { config } = loadConfig({ NODE_ENV: 'development' });
    expect(config).toMatchObject({ PUSH_ENABLED: true, VAPID_GENERATED: true, VAPID_SUBJECT: 'mailto:postbox@localhost' });
    expect(vapidPairMatches(config.VAPID_PUBLIC_KEY!, config.VAPID_PRIVATE_KEY!)).toBe(true);
    const headers = webpush.getVapidHeaders('https://push.example', config.VAPID_SUBJECT!, config.VAPID_PUBLIC_KEY!, config.VAPID_PRIVATE_KEY!, 'aes128gcm');
    expect(headers.Authorization).toMatch(new RegExp(`k=${config.VAPID_PUBLIC_KEY}$`));
  });

  it('keeps the development pair in DATA_DIR/dev-keys.json across starts, beside the other keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'postbox-vapid-'));
    dirs.push(dir);
    const first = persistDevelopmentVapidKeys(loadConfig({ DATA_DIR: dir }).config);
    expect(first.created).toBe(true);
    const second = persistDevelopmentVapidKeys(loadConfig({ DATA_DIR: dir }).config);
    expect(second.created).toBe(false);
    expect(second.config.VAPID_PUBLIC_KEY).toBe(first.config.VAPID_PUBLIC_KEY);
    expect(second.config.VAPID_PRIVATE_KEY).toBe(first.config.VAPID_PRIVATE_KEY);
    expect(JSON.parse(readFileSync(join(dir, 'dev-keys.json'), 'utf8'))).toMatchObject({ VAPID_PUBLIC_KEY: first.config.VAPID_PUBLIC_KEY });
    // Keys from the environment are never written.
    const given = loadConfig({ DATA_DIR: dir, ...vapid }).config;
    expect(persistDevelopmentVapidKeys(given)).toEqual({ config: given, created: false });
  });
});
