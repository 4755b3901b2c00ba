import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { SseSession } from '../../src/delivery/sse-session.js';
import { StreamHub } from '../../src/delivery/stream-hub.js';

/** A response that takes every write at once; `socket` is absent, so the session's socket settings are skipped. */
class SinkResponse extends Writable {
  readonly socket = undefined;

  writeHead(): this {
    return this;
  }

  override _write(_chunk: unknown, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    done();
  }
}

describe('StreamHub', () => {
  it('counts open streams and users as streams open and close, each close once', () => {
    const hub = new StreamHub(systemClock, 15_000);
    const open = (userId: string) => {
      const session = new SseSession(userId, new SinkResponse() as unknown as ServerResponse, systemClock, {
        retryMs: 1000,
        writeStallMs: 1000,
      });
      hub.add(session);
      return session;
    };
    const first = open('user-a');
    open('user-a');
    const other = open('user-b');
    expect([hub.size, hub.userCount]).toEqual([3, 2]);
    first.close('test');
    first.close('test');
    expect([hub.size, hub.userCount]).toEqual([2, 2]);
    other.close('test');
    expect([hub.size, hub.userCount, hub.count('user-a')]).toEqual([1, 1, 1]);
    hub.closeAll('shutdown');
    expect([hub.size, hub.userCount]).toEqual([0, 0]);
  });
});
