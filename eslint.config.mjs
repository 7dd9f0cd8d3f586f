import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules',
      'dist',
      'build',
      'models',
      'native',
      '.device',
      'coverage',
      '**/*.js',
      '**/*.mjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Read configuration through @app/config only.' },
      ],
    },
  },
  {
    // Tests read their own knobs through test/support/test-env.ts (which says why it may).
    files: ['libs/config/**/*.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    files: ['apps/**/*.ts', 'libs/**/*.ts', 'bench/**/*.ts'],
    ignores: ['**/*.spec.ts', 'libs/*/src/testing/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@app/*/testing', '@app/*/testing/*'], message: 'Test doubles are for specs only.' },
          ],
        },
      ],
    },
  },
);
