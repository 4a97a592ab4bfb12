// Test runner config: three tiers as vitest projects, in forked processes (Temporal's native worker and SIGKILL tests need real processes).
//   unit      every test that starts no server and reads no service: `npx vitest run dro/` boots nothing
//   workflow  workflows/**/*.test.ts on Temporal's test environment (each file starts its own server)
//   services  the real-server scenarios in test/, after test/global-setup.ts made the local services answer
import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

/**
 * The files in test/ that need no server: they read the repository, replay a recorded history without a
 * server, or run activities and the CLI's readers on a directory store. Every other file in test/ is a
 * services test, so a new scenario gets the services unless it is listed here.
 */
const UNIT_TESTS_IN_TEST = [
  'test/activities-idempotency.test.ts',
  'test/depcheck.test.ts',
  'test/docs.test.ts',
  'test/lint.test.ts',
  'test/llama-cpp.test.ts',
  'test/lora-checkpoints.test.ts',
  'test/transformers.test.ts',
  'test/properties.test.ts',
  'test/reference/llama-forward.test.ts',
  'test/replay.test.ts',
  'test/report.test.ts',
  'test/run-config-file.test.ts',
];

/** Services tests `npm test` runs in its other stream (scripts/dev/test.ts), left out of this run. */
const EXCLUDED = (process.env.DRO_TEST_EXCLUDE ?? '').split(',').filter(Boolean);

const SERVICES_TESTS = readdirSync(new URL('test/', import.meta.url), { recursive: true, encoding: 'utf8' })
  .map((file) => `test/${file.split('\\').join('/')}`)
  .filter((file) => file.endsWith('.test.ts') && !UNIT_TESTS_IN_TEST.includes(file));

export default defineConfig({
  test: {
    pool: 'forks',
    exclude: ['node_modules/**', '.tools/**', '.data/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    coverage: {
      provider: 'v8',
      // The pure algorithm must be fully covered by its own tests; `npm test` enforces it.
      include: ['dro/**/*.ts'],
      exclude: ['**/*.test.ts'],
      thresholds: { statements: 100 },
      reportsDirectory: '.data/coverage',
      reporter: ['text-summary', 'text'],
    },
    // Each project takes the options above (`extends: true`); only the services project has a globalSetup.
    projects: [
      { extends: true, test: { name: 'unit', include: ['**/*.test.ts'], exclude: ['workflows/**', ...SERVICES_TESTS] } },
      { extends: true, test: { name: 'workflow', include: ['workflows/**/*.test.ts'] } },
      { extends: true, test: { name: 'services', include: SERVICES_TESTS.filter((f) => !EXCLUDED.includes(f)), globalSetup: ['test/global-setup.ts'] } },
    ],
  },
});
