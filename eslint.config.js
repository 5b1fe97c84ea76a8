// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', '.custody/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node }, ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-control-regex': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // The web console runs in the browser.
    files: ['packages/console/**/*.{ts,tsx}'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // Library code: no console, and core does no I/O (node:crypto and Buffer only behind #sha256, #ed25519-sign and #codec).
    files: ['packages/core/src/**/*.ts'],
    ignores: ['**/*.test.ts', 'packages/core/src/sha256-node.ts', 'packages/core/src/ed25519-sign-node.ts', 'packages/core/src/codec-node.ts'],
    rules: {
      'no-console': 'error',
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'path', 'http', 'https', 'net', 'crypto'], message: '@custody/core does no I/O and must run in the browser.' }] }],
      'no-restricted-globals': ['error', { name: 'process', message: '@custody/core must run in the browser.' }, { name: 'Buffer', message: 'Use Uint8Array: @custody/core must run in the browser.' }],
    },
  },
  {
    files: ['packages/*/src/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: { 'no-console': 'error' },
  },
  {
    // The SDK's main path is fetch-based and runs outside Node; only the spool touches the file system.
    files: ['packages/sdk/src/**/*.ts'],
    ignores: ['**/*.test.ts', 'packages/sdk/src/spool/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'path', 'http', 'https', 'net', 'crypto'], message: '@custody/sdk runs outside Node: Node modules belong in @custody/sdk/spool.' }] }],
      'no-restricted-globals': ['error', { name: 'Buffer', message: 'Use Uint8Array: @custody/sdk runs outside Node.' }],
    },
  },
  {
    // File names are kebab-case (the console's React files too).
    files: ['**/*.ts', '**/*.tsx'],
    plugins: {
      custody: {
        rules: {
          'kebab-case-files': {
            meta: { type: 'suggestion', schema: [], messages: { name: 'File names are kebab-case: {{name}}' } },
            create(context) {
              const name = context.filename.split(/[\\/]/).pop() ?? '';
              return {
                Program(node) {
                  if (!/^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+)*\.tsx?$/.test(name)) context.report({ node, messageId: 'name', data: { name } });
                },
              };
            },
          },
        },
      },
    },
    rules: { 'custody/kebab-case-files': 'error' },
  },
);
