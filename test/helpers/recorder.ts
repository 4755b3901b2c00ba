/** A condition on everything recorded so far: a count to reach, or a predicate to hold. */
export type RecordCondition<T> = number | ((items: readonly T[]) => boolean);

/** An append-only list that tests can wait on, without polling and with a deadline. */
export interface Recorder<T> {
  readonly items: readonly T[];
  add(item: T): void;
  /** Re-checks pending waiters after an item recorded earlier was updated in place. */
  changed(): void;
  /** Resolves with `items` once the condition holds; rejects after timeoutMs, listing what arrived. */
  waitFor(condition: RecordCondition<T>, timeoutMs: number): Promise<readonly T[]>;
  /** Rejects every pending waitFor, so a closed server fails its waiters at once. */
  cancel(reason: string): void;
}

interface Waiter {
  holds: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** @param label names the recorder in timeout messages, e.g. 'push service'. */
export function createRecorder<T>(label: string): Recorder<T> {
  const items: T[] = [];
  const waiters = new Set<Waiter>();

  function changed(): void {
    for (const w of [...waiters]) if (w.holds()) w.resolve();
  }

  return {
    items,
    add(item) {
      items.push(item);
      changed();
    },
    changed,
    async waitFor(condition, timeoutMs) {
      const holds = typeof condition === 'number' ? () => items.length >= condition : () => condition(items);
      if (holds()) return items;
      await new Promise<void>((resolve, reject) => {
        const settle = (): void => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        const waiter: Waiter = {
          holds,
          resolve: () => {
            settle();
            resolve();
          },
          reject: (err) => {
            settle();
            reject(err);
          },
        };
        const wanted = typeof condition === 'number' ? `${condition} entries` : 'the condition';
        const timer = setTimeout(
          () => waiter.reject(new Error(`${label}: ${wanted} not reached within ${timeoutMs} ms; got ${JSON.stringify(items, null, 1)}`)),
          timeoutMs,
        );
        waiters.add(waiter);
      });
      return items;
    },
    cancel(reason) {
      for (const w of [...waiters]) w.reject(new Error(`${label}: ${reason}`));
    },
  };
}
