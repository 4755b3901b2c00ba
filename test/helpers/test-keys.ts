/**
 * The keys every test node runs with, in-process (start-app.ts) or as its own
 * process (spawn-server.ts), so a test can call either with the same credentials.
 */
export const TEST_KEYS = {
  API_KEY: 'test-api-key-0123456789',
  ADMIN_KEY: 'test-admin-key-0123456789',
  TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
} as const;
