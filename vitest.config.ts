import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each integration file starts its own redis-server; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    // Waits inside a test give up after 20 s each (waitUntil); a test may wait several times,
    // and a hook starts redis-server and nodes, on a machine at load 18: limits well above that.
    // (A limit only bounds how long a broken test takes to fail.)
    testTimeout: 120_000,
    hookTimeout: 120_000,
    sequence: {
      // The fixture (test/helpers/use-node.ts) relies on it: beforeAll hooks in the order they
      // were registered (Redis before the nodes on it), afterAll in reverse. vitest's default,
      // spelled out.
      hooks: 'stack',
    },
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
