import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAckBatcher, PostboxError } from '../../src/client/postbox.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function recorder() {
  const batches: string[][] = [];
  const send = vi.fn(async (ids: string[]) => {
    batches.push(ids);
  });
  return { batches, send };
}

describe('createAckBatcher', () => {
  it('sends ids together 100 ms after the first one', async () => {
    const { batches, send } = recorder();
    const batcher = createAckBatcher({ send });
    batcher.add('1-0');
    await vi.advanceTimersByTimeAsync(50);
    batcher.add(['2-0', '3-0']);
    await vi.advanceTimersByTimeAsync(49);
    expect(batches).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([['1-0', '2-0', '3-0']]);
    expect(batcher.queued).toBe(0);
  });

  it('sends at once when 100 ids are waiting', async () => {
    const { batches, send } = recorder();
    const batcher = createAckBatcher({ send });
    const ids = Array.from({ length: 100 }, (_, i) => `1-${i}`);
    batcher.add(ids.slice(0, 99));
    expect(send).not.toHaveBeenCalled();
    batcher.add(ids[99] as string);
    expect(batches).toEqual([ids]);
  });

  it('sends an id acked twice once', async () => {
    const { batches, send } = recorder();
    const batcher = createAckBatcher({ send });
    batcher.add(['1-0', '1-0']);
    batcher.add('1-0');
    await batcher.flush();
    expect(batches).toEqual([['1-0']]);
  });

  it('splits a flush into sends of at most 1000 ids, in order', async () => {
    const { batches, send } = recorder();
    const batcher = createAckBatcher({ send, batchSize: 5000 });
    const ids = Array.from({ length: 2500 }, (_, i) => `1-${i}`);
    batcher.add(ids);
    await batcher.flush();
    expect(batches.map((b) => b.length)).toEqual([1000, 1000, 500]);
    expect(batches.flat()).toEqual(ids);
  });

  it('keeps the ids of a failed send and sends them, oldest first, with the next batch', async () => {
    const batches: string[][] = [];
    let up = false;
    const onError = vi.fn();
    const send = vi.fn(async (ids: string[]) => {
      if (!up) throw new Error('network down');
      batches.push(ids);
    });
    const batcher = createAckBatcher({ send, onError, retryMs: 1000 });
    batcher.add(['1-0', '2-0']);
    await vi.advanceTimersByTimeAsync(100);
    expect(onError).toHaveBeenCalledWith(new Error('network down'));
    expect(batcher.queued).toBe(2);

    // While failing, new ids wait for the retry instead of each triggering a send.
    batcher.add(Array.from({ length: 150 }, (_, i) => `3-${i}`));
    expect(send).toHaveBeenCalledTimes(1);
    up = true;
    await vi.advanceTimersByTimeAsync(1000);
    expect(send).toHaveBeenCalledTimes(2);
    expect(batches[0]?.slice(0, 3)).toEqual(['1-0', '2-0', '3-0']);
    expect(batches[0]).toHaveLength(152);
    expect(batcher.queued).toBe(0);
  });

  it('drops the oldest ids beyond maxQueued and says so', async () => {
    const onError = vi.fn();
    const send = vi.fn(async (_ids: string[]): Promise<void> => {
      throw new Error('down');
    });
    const batcher = createAckBatcher({ send, onError, maxQueued: 3, batchSize: 1000 });
    batcher.add(['1-0', '2-0', '3-0', '4-0', '5-0']);
    expect(batcher.queued).toBe(3);
    const dropped = onError.mock.calls[0]?.[0] as PostboxError;
    expect(dropped).toBeInstanceOf(PostboxError);
    expect(dropped.code).toBe('PB_CLIENT_ACKS_DROPPED');
    send.mockImplementation(async () => {});
    await batcher.flush();
    expect(send).toHaveBeenLastCalledWith(['3-0', '4-0', '5-0']);
  });

  it('runs one send at a time; ids added meanwhile go in the next one', async () => {
    const batches: string[][] = [];
    let release: () => void = () => {};
    const send = vi.fn((ids: string[]) => {
      batches.push(ids);
      return new Promise<void>((resolve) => (release = resolve));
    });
    const batcher = createAckBatcher({ send });
    batcher.add('1-0');
    const first = batcher.flush();
    batcher.add('2-0');
    const second = batcher.flush();
    expect(send).toHaveBeenCalledTimes(1);
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(batches).toEqual([['1-0'], ['2-0']]);
    release();
    await Promise.all([first, second]);
    expect(batcher.queued).toBe(0);
  });

  it('flushes on close, then ignores ids and leaves no timer behind', async () => {
    const { batches, send } = recorder();
    const batcher = createAckBatcher({ send });
    batcher.add('1-0');
    await batcher.close();
    batcher.add('2-0');
    expect(batches).toEqual([['1-0']]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not schedule a retry after close when the last send fails', async () => {
    const onError = vi.fn();
    const batcher = createAckBatcher({
      send: async () => {
        throw new Error('down');
      },
      onError,
    });
    batcher.add('1-0');
    await batcher.close();
    expect(onError).toHaveBeenCalledOnce();
    expect(vi.getTimerCount()).toBe(0);
  });
});
