import { defineConfig } from 'vitest/config';

/**
 * The soak: the fault suite and the fuzz, longer (`npm run test:soak`, not part of `npm test`).
 * The same files as in `npm test`, with larger counts read from the environment.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts', 'test/security/fuzz.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 120_000,
    globalSetup: ['test/helpers/global-setup.ts'],
    env: {
      FUZZ_RUNS: '5000',
      STORM_STREAMS: '5000',
      KILL_ROUNDS: '8',
      LOAD_MESSAGES: '3000',
    },
  },
});
