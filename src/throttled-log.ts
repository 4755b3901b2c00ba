import type { Logger } from 'pino';
import type { Clock } from './clock.js';

export interface ThrottledLogOptions {
  /** What failed, the log line's message: 'drain pass failed'. */
  message: string;
  /** Level of the failure lines. @defaultValue 'warn' */
  level?: 'debug' | 'info' | 'warn' | 'error';
  /** The same failure is logged at most once this often, ms. @defaultValue 30000 */
  intervalMs?: number;
}

/**
 * A failure that repeats (Redis away, a reconnect loop) logged as one line
 * when it starts, one line per `intervalMs` while it lasts (with how many
 * were left out), and one line when it ends, instead of one per attempt.
 */
export interface ThrottledLog {
  /** A failure; logged unless the same one was logged within the interval. */
  failed(err: unknown, fields?: Record<string, unknown>): void;
  /** Success: if failures were logged, one line saying it works again. */
  succeeded(fields?: Record<string, unknown>): void;
  /** Whether the last call was a failure. */
  readonly failing: boolean;
}

export function createThrottledLog(logger: Logger, clock: Clock, options: ThrottledLogOptions): ThrottledLog {
  const level = options.level ?? 'warn';
  const intervalMs = options.intervalMs ?? 30_000;
  let lastText = '';
  let lastAt = -Infinity;
  let suppressed = 0;
  let failing = false;
  return {
    failed(err, fields = {}) {
      failing = true;
      const text = err instanceof Error ? err.message : String(err);
      const now = clock.now();
      if (text === lastText && now - lastAt < intervalMs) {
        suppressed += 1;
        return;
      }
      logger[level]({ err, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, options.message);
      lastText = text;
      lastAt = now;
      suppressed = 0;
    },
    succeeded(fields = {}) {
      if (!failing) return;
      failing = false;
      if (lastText !== '') logger.info({ ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, `${options.message}: works again`);
      lastText = '';
      lastAt = -Infinity;
      suppressed = 0;
    },
    get failing() {
      return failing;
    },
  };
}
