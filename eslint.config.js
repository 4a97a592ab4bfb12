// Lint rules: type-aware TypeScript checks everywhere, and the sandbox boundary for workflow code.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Workflow code runs in Temporal's deterministic sandbox: it may import the SDK, its own folder and
// anything as a type, but never Node built-ins, native/IO libraries or our engine code as values.
const workflowFiles = ['workflows/**/*.ts', 'test/fixtures/workflows/**/*.ts'];
// The workflow tier's tests and fixtures run in Node beside the sandbox, never inside it.
const workflowTestFiles = ['workflows/**/*.test.ts', 'workflows/testing/**/*.ts'];
const nodeBuiltins = builtinModules.filter((m) => !m.startsWith('_'));

// The engine's front door: code outside engine/ reaches it only through engine/index.ts, so what is
// inside can move without its callers noticing. Tests may reach inside to test internals.
const engineCallers = ['activities/**/*.ts', 'scripts/**/*.ts', 'workers/**/*.ts', 'datasets/**/*.ts', 'storage/**/*.ts', 'cli/**/*.ts'];

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: workflowFiles,
    ignores: workflowTestFiles,
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Node built-ins are not available in the workflow sandbox; do this in an activity.',
          })),
          patterns: [
            { group: ['node:*'], message: 'Node built-ins are not available in the workflow sandbox; do this in an activity.' },
            { group: ['onnxruntime-node', 'onnxruntime-node/*'], message: 'The ONNX engine runs in activities on the policy worker, never in workflow code.' },
            { group: ['@aws-sdk/*'], message: 'Storage I/O belongs in activities, never in workflow code.' },
            {
              // dro/ is pure, deterministic math (docs/architecture.md, "Layout"): the workflow may run it, e.g. an update's validator.
              // activities/errors.ts (it imports only @temporalio/common) holds the one list of fatal failure types.
              regex: '^\\.\\./(?!dro/[^/]+$|activities/errors\\.js$)',
              allowTypeImports: true,
              message: 'Workflow code imports our other modules only as types (`import type`), e.g. activities via proxyActivities; only ../dro/ and ../activities/errors.js may be imported as code.',
            },
          ],
        },
      ],
    },
  },
  {
    files: engineCallers,
    ignores: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)engine/(?!index\\.js$)',
              message: 'Import the engine through its front door, engine/index.js (export what you need there); only tests reach inside.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
