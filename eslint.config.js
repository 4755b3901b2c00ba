import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Imports run one way: http → delivery → queue, workers → queue; nothing
 * imports http (only the wiring, src/postbox.ts and src/main.ts, sees it).
 */
const layer = (files, forbidden) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((name) => ({
          group: [`**/${name}/*`, `../${name}/*`, `./${name}/*`],
          message: `${files[0].split('/')[1]} may not import src/${name} (imports run http → delivery → queue, workers → queue)`,
        })),
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'client/dist/**', 'node_modules/**', 'data/**', 'coverage/**', 'test-artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  layer(['src/queue/**/*.ts'], ['http', 'delivery', 'workers']),
  layer(['src/delivery/**/*.ts'], ['http', 'workers']),
  layer(['src/workers/**/*.ts'], ['http', 'delivery']),
  layer(['src/metrics/**/*.ts'], ['http', 'delivery', 'workers']),
  {
    files: ['bench/**/*.ts', 'test/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
);
