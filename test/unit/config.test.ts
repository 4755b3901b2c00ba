import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults and generates development keys', () => {
    const { config, generated } = loadConfig({});
    expect(config).toMatchObject({
      PORT: 8080,
      KEY_PREFIX: 'pb',
      DRAIN_INTERVAL_MS: 1000,
      ACK_TIMEOUT_MS: 30_000,
      MAX_INFLIGHT: 100,
      MAX_DELIVERIES: 5,
      HEARTBEAT_MS: 15_000,
      QUEUE_MAX_LENGTH: 10_000,
    });
    expect(generated).toEqual(['API_KEY', 'ADMIN_KEY', 'TOKEN_SECRET']);
    expect(config.API_KEY.length).toBeGreaterThanOrEqual(16);
    expect(config.TOKEN_SECRET.length).toBeGreaterThanOrEqual(32);
    expect(config.API_KEY).not.toBe(config.ADMIN_KEY);
  });

  it('refuses to start in production without the three secrets', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', API_KEY: 'a'.repeat(16) })).toThrow(
      /requires ADMIN_KEY, TOKEN_SECRET/,
    );
  });

  it('starts in production with the secrets and generates nothing', () => {
    const { generated } = loadConfig({
      NODE_ENV: 'production',
      API_KEY: 'a'.repeat(16),
      ADMIN_KEY: 'b'.repeat(16),
      TOKEN_SECRET: 'c'.repeat(32),
    });
    expect(generated).toEqual([]);
  });

  it('names every invalid variable', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', MAX_INFLIGHT: '0', REDIS_URL: 'http://x' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/PORT/);
    expect(message).toMatch(/MAX_INFLIGHT/);
    expect(message).toMatch(/REDIS_URL/);
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ PORT: '' }).config.PORT).toBe(8080);
  });
});
