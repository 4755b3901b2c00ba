/**
 * Time and timers go through one object so tests can control them and the
 * code never calls Date.now or setTimeout directly where timing is behaviour.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(handle: NodeJS.Timeout | undefined): void;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clearInterval(handle: NodeJS.Timeout | undefined): void;
  /** Runs `fn` in this turn of the event loop's check phase: after the I/O callbacks the turn polled. */
  setImmediate(fn: () => void): NodeJS.Immediate;
  clearImmediate(handle: NodeJS.Immediate | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h),
  setImmediate: (fn) => setImmediate(fn),
  clearImmediate: (h) => clearImmediate(h),
};
