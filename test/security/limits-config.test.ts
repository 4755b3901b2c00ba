import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { addressKey } from '../../src/http/stream-limits.js';
import { jsonDepth } from '../../src/http/body.js';

describe('limit settings', () => {
  it('has defaults that a normal application never meets', () => {
    const { config } = loadConfig({});
    expect(config).toMatchObject({
      RATE_LIMIT_KEY_PER_SECOND: 50_000,
      RATE_LIMIT_KEY_BURST: 100_000,
      RATE_LIMIT_USER_PER_SECOND: 100,
      RATE_LIMIT_USER_BURST: 1000,
      MAX_STREAMS_PER_NODE: 20_000,
      STREAM_OPENS_PER_ADDRESS: 1000,
      STREAM_OPENS_WINDOW_MS: 10_000,
      TRUST_PROXY_HOPS: 0,
      HTTP_HEADERS_TIMEOUT_MS: 10_000,
      HTTP_REQUEST_TIMEOUT_MS: 30_000,
      HTTP_KEEP_ALIVE_TIMEOUT_MS: 5000,
      HTTP_MAX_CONNECTIONS: 21_000,
      HTTP_LISTEN_BACKLOG: 4096,
    });
    // A full batch for one user fits in one burst.
    expect(config.RATE_LIMIT_USER_BURST).toBeGreaterThanOrEqual(1000);
  });

  it('takes fractional rates and refuses a burst smaller than its rate, or headers slower than the request', () => {
    expect(loadConfig({ RATE_LIMIT_USER_PER_SECOND: '0.5', RATE_LIMIT_USER_BURST: '1' }).config.RATE_LIMIT_USER_PER_SECOND).toBe(0.5);
    expect(() => loadConfig({ RATE_LIMIT_USER_PER_SECOND: '10', RATE_LIMIT_USER_BURST: '5' })).toThrow(/RATE_LIMIT_USER_BURST \(5\)/);
    expect(() => loadConfig({ RATE_LIMIT_KEY_PER_SECOND: '10', RATE_LIMIT_KEY_BURST: '5' })).toThrow(/RATE_LIMIT_KEY_BURST/);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '5000', HTTP_REQUEST_TIMEOUT_MS: '1000' })).toThrow(/HTTP_HEADERS_TIMEOUT_MS/);
    expect(loadConfig({ MAX_STREAMS_PER_NODE: '10' }).config.HTTP_MAX_CONNECTIONS).toBe(1010);
    expect(loadConfig({ HTTP_MAX_CONNECTIONS: '50' }).config.HTTP_MAX_CONNECTIONS).toBe(50);
  });

  it('counts IPv6 clients by their /64 and IPv4 ones as they are, mapped or not', () => {
    expect(addressKey('127.0.0.1')).toBe('127.0.0.1');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:0:1:aaaa::1')).toBe(addressKey('2001:db8:0:1:bbbb:cccc:dddd:eeee'));
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8:0:2::1')).not.toBe(addressKey('2001:db8:0:1::1'));
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('measures JSON nesting in one pass, ignoring brackets in strings and escaped quotes', () => {
    expect(jsonDepth('1')).toBe(0);
    expect(jsonDepth('[[1],{"a":[2]}]')).toBe(3);
    expect(jsonDepth('{"a":"[[[[\\\\"}"}')).toBe(1);
    expect(jsonDepth('["\\"[[[[", []]')).toBe(2);
    expect(jsonDepth('['.repeat(100), 10)).toBe(11);
  });
});
