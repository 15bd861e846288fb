// Lint rules, configured once for the whole tree (npm run lint; .ci/run runs it). Formatting is prettier's
// (.prettierrc.json): no stylistic rules here, so the two never disagree.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'release/', 'node_modules/', 'test/fuzz/corpus/', 'addons/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // Control characters are what log escaping and protocol parsing look for.
      'no-control-regex': 'off',
    },
  },
  {
    // Small files, one purpose each: a longer file says why at its top.
    files: ['src/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 300 }] },
  },
  {
    // Tests read JSON answers of the API and peers' messages, whose shapes the test asserts on; a test's
    // failure puts what it caught in its message, which is what the runner shows.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'harness/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', 'preserve-caught-error': 'off' },
  },
);
