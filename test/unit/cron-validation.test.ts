import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { validateCron } from '../../src/queue/schedules.js';

function messageOf(cron: string, tz?: string): string {
  try {
    validateCron(cron, tz);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return (err as AppError).message;
  }
  return 'valid';
}

describe('validateCron', () => {
  it('names the field that is wrong, with the fields a pattern has', () => {
    expect(messageOf('0 9 * bog *')).toBe(
      'cron: the month field "bog" is wrong: cannot resolve alias "bog" (fields: minute hour day-of-month month day-of-week)',
    );
    expect(messageOf('61 * * * *')).toMatch(/^cron: the minute field "61" is wrong: got value 61 expected range 0-59/);
    expect(messageOf('0 61 9 * * *')).toMatch(/^cron: the minute field "61" is wrong: .*\(fields: second minute hour/);
    expect(messageOf('0 9 * * funday')).toMatch(/^cron: the day-of-week field "funday" is wrong/);
  });

  it('blames the time zone, not a field, for an unknown tz', () => {
    expect(messageOf('0 9 * * *', 'Mars/Olympus')).toMatch(/^cron: the time zone tz "Mars\/Olympus" is wrong: /);
  });

  it('says how many fields a pattern has when the count is off, and what no single field explains', () => {
    expect(messageOf('* * * * * * *')).toMatch(/a pattern has 5 fields, minute hour day-of-month month day-of-week, or 6 .*this one has 7/);
    // Each field alone is fine; together no date matches.
    expect(messageOf('0 0 31 2 *')).toBe('cron "0 0 31 2 *": Invalid explicit day of month definition');
  });

  it('accepts what BullMQ runs', () => {
    for (const cron of ['0 9 * * mon-fri', '*/5 * * * * *', '@daily', '0 0 1 1 *']) expect(messageOf(cron)).toBe('valid');
    expect(messageOf('0 9 * * *', 'Europe/Paris')).toBe('valid');
  });
});
