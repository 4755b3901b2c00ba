import { describe, expect, it } from 'vitest';
import { AppError, errorCatalogue, isRedisUnavailable } from '../../src/errors.js';

describe('error catalogue', () => {
  it('has PB_ERR_ codes with client or server statuses and a message each', () => {
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      expect(code).toMatch(/^PB_ERR_[A-Z_]+$/);
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.status).toBeLessThan(600);
      expect(entry.message.length).toBeGreaterThan(5);
    }
  });

  it('exposes 4xx messages and hides 5xx ones', () => {
    expect(new AppError('PB_ERR_VALIDATION', 'bad').expose).toBe(true);
    expect(new AppError('PB_ERR_INTERNAL', 'secret detail').expose).toBe(false);
  });

  it('recognises Redis being away', () => {
    expect(isRedisUnavailable(new Error("Stream isn't writeable and enableOfflineQueue options is false"))).toBe(true);
    expect(isRedisUnavailable(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBe(true);
    expect(isRedisUnavailable(new Error('ERR wrong number of arguments'))).toBe(false);
  });
});
