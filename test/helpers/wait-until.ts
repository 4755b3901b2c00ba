export interface WaitOptions {
  /** Give up after this long, ms. Generous: a loaded machine is slow, not wrong. @defaultValue 20000 */
  timeoutMs?: number;
  /** Pause between checks, ms. @defaultValue 25 */
  intervalMs?: number;
}

export type Check = () => boolean | void | Promise<boolean | void>;

const describe = (value: unknown): string => {
  if (value instanceof Error) return `threw ${value.message.split('\n')[0]}`;
  return `returned ${String(value)}`;
};

/**
 * Waits until `check` passes: it returns anything but `false` without
 * throwing. A check that throws is "not yet" (an `expect` not met, a refused
 * connection), so `() => expect(x.events).toHaveLength(3)` waits and, on
 * timeout, reports the value it last saw. The error names `what` ("until …").
 *
 * This is how a test waits for something to happen: on a condition, never on
 * a fixed sleep, so a slow machine only makes the wait longer.
 */
export async function waitUntil(check: Check, what: string, options: number | WaitOptions = {}): Promise<void> {
  const { timeoutMs = 20_000, intervalMs = 25 } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  // Bounded: at most one check per interval until the deadline, and at least one check.
  for (;;) {
    try {
      last = await check();
      if (last !== false) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}; the last check ${describe(last)}`, {
        cause: last instanceof Error ? last : undefined,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Waits until `done` accepts what `read` returns, and returns that value. On timeout the error
 * shows the last value read (as JSON), after what waitUntil says.
 */
export async function eventually<T>(
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  what: string,
  options: number | WaitOptions = {},
): Promise<T> {
  let value: T | undefined;
  await waitUntil(
    async () => {
      value = await read();
      if (!done(value)) throw new Error(`last seen: ${JSON.stringify(value)}`);
    },
    what,
    options,
  );
  return value as T;
}
