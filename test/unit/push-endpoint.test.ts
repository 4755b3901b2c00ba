import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { checkEndpoint, checkEndpointUrl, EndpointRefusedError, isPrivateAddress, publicOnlyLookup } from '../../src/workers/push-endpoint.js';
import { createPushSender } from '../../src/workers/push-sender.js';
import { retryAfterMs } from '../../src/workers/retry-after.js';
import { testVapid } from '../helpers/start-push-app.js';

describe('isPrivateAddress', () => {
  it.each([
    '127.0.0.1', '127.255.0.9', '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '0.0.0.0', '224.0.0.1', '255.255.255.255', '198.18.0.1', '192.0.2.10',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1',
    '64:ff9b::7f00:1', '64:ff9b::10.0.0.1', '2002:c0a8:0101::1', '2001:db8::1',
    'not-an-address',
  ])('refuses %s', (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each(['8.8.8.8', '142.250.74.110', '172.32.0.1', '100.128.0.1', '2a00:1450:4007:80b::200a', '64:ff9b::808:808', '::ffff:8.8.8.8'])(
    'accepts %s',
    (address) => {
      expect(isPrivateAddress(address)).toBe(false);
    },
  );
});

describe('checkEndpointUrl', () => {
  it('takes a canonical https URL on port 443 of a name or public address', () => {
    expect(checkEndpointUrl('https://fcm.googleapis.com/fcm/send/abc:APA91b', false).origin).toBe('https://fcm.googleapis.com');
    expect(checkEndpointUrl('https://8.8.8.8/push/x', false).hostname).toBe('8.8.8.8');
  });

  it.each([
    ['http://push.example.com/x', /https/],
    ['ftp://push.example.com/x', /https/],
    ['//push.example.com/x', /absolute/],
    ['https://user:pass@push.example.com/x', /credentials/],
    ['https://push.example.com:8443/x', /port 443/],
    ['https://2130706433/x', /canonical/], // 127.0.0.1 in another spelling
    ['https://PUSH.example.com/x', /canonical/],
    ['https://127.0.0.1/x', /private/],
    ['https://[::1]/x', /private/],
    ['https://[::ffff:a00:1]/x', /private/],
  ])('refuses %s', (endpoint, why) => {
    expect(() => checkEndpointUrl(endpoint, false)).toThrow(why);
  });

  it('with allowPrivate still wants https and a canonical URL, but takes loopback and any port', () => {
    expect(checkEndpointUrl('https://127.0.0.1:4443/push/x', true).port).toBe('4443');
    expect(() => checkEndpointUrl('http://127.0.0.1:4443/push/x', true)).toThrow(EndpointRefusedError);
  });
});

describe('address checks with DNS', () => {
  it('refuses a name that resolves to loopback, at subscribe time', async () => {
    await expect(checkEndpoint('https://localhost/push/x', false)).rejects.toThrow(/resolves to 127\.0\.0\.1/);
  });

  it('refuses it again when a socket connects (the lookup push requests use)', async () => {
    const err = await new Promise<unknown>((resolve) => publicOnlyLookup('localhost', { all: true }, (e) => resolve(e)));
    expect(err).toBeInstanceOf(EndpointRefusedError);
  });

  it('makes the sender refuse the push without connecting anywhere', async () => {
    const sender = createPushSender(
      { vapid: { ...testVapid, subject: 'mailto:ops@postbox.example' }, allowPrivate: false, timeoutMs: 5000 },
      systemClock,
    );
    const keys = { p256dh: 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM', auth: 'tBHItJI5svbpez7KI4CCXg' };
    try {
      expect(await sender.send({ endpoint: 'https://localhost/push/x', ...keys }, 'hi', { ttlSeconds: 60 })).toMatchObject({
        outcome: 'blocked',
        reason: expect.stringMatching(/resolves to 127\.0\.0\.1/),
      });
    } finally {
      sender.close();
    }
  });
});

describe('retryAfterMs', () => {
  it('reads delay-seconds and HTTP-dates (RFC 9110 §10.2.3)', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs('7', now)).toBe(7000);
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });
});
