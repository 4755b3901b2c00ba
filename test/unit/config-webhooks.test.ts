import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, testConfig, webhookSecret } from '../../src/config.js';

describe('receipt and webhook settings', () => {
  it('defaults: receipts kept 24 h, 10,000 per user, no webhooks, the three outcome events', () => {
    const config = testConfig();
    expect(config.RECEIPT_RETENTION_MS).toBe(86_400_000);
    expect(config.RECEIPTS_MAX_PER_USER).toBe(10_000);
    expect(config.WEBHOOK_URL).toBeUndefined();
    expect(config.WEBHOOK_EVENTS).toEqual(['message.acked', 'message.dead', 'message.expired']);
  });

  it('reads WEBHOOK_EVENTS as a list and refuses an unknown event', () => {
    expect(testConfig({ WEBHOOK_EVENTS: ' message.delivered , message.acked' }).WEBHOOK_EVENTS).toEqual([
      'message.delivered',
      'message.acked',
    ]);
    expect(() => testConfig({ WEBHOOK_EVENTS: 'message.acked,message.read' })).toThrow(ConfigError);
  });

  it('refuses a WEBHOOK_URL that is not http(s) and a secret that is not whsec_<base64>', () => {
    expect(() => testConfig({ WEBHOOK_URL: 'ftp://example.com/hooks' })).toThrow(/http/);
    expect(() => testConfig({ WEBHOOK_SECRET: 'plain-text-secret' })).toThrow(/whsec_/);
  });

  it('requires WEBHOOK_SECRET with WEBHOOK_URL in production', () => {
    const env = {
      NODE_ENV: 'production',
      API_KEY: 'a'.repeat(16),
      ADMIN_KEY: 'b'.repeat(16),
      TOKEN_SECRET: 'c'.repeat(32),
      WEBHOOK_URL: 'https://app.example.com/hooks',
    };
    expect(() => loadConfig(env)).toThrow(/WEBHOOK_SECRET/);
    const secret = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
    expect(loadConfig({ ...env, WEBHOOK_SECRET: secret }).config.WEBHOOK_SECRET).toBe(secret);
  });

  it('derives a stable development secret from TOKEN_SECRET that the standardwebhooks library accepts', () => {
    const a = testConfig({ TOKEN_SECRET: 'x'.repeat(40) });
    const b = testConfig({ TOKEN_SECRET: 'x'.repeat(40) });
    const c = testConfig({ TOKEN_SECRET: 'y'.repeat(40) });
    expect(webhookSecret(a)).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(webhookSecret(a)).toBe(webhookSecret(b));
    expect(webhookSecret(a)).not.toBe(webhookSecret(c));
    const hook = new Webhook(webhookSecret(a));
    const at = new Date();
    const signature = hook.sign('msg_1', at, '{}');
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature };
    expect(hook.verify('{}', headers)).toEqual({});
    const given = `whsec_${Buffer.alloc(24, 1).toString('base64')}`;
    expect(webhookSecret({ ...a, WEBHOOK_SECRET: given })).toBe(given);
  });
});
