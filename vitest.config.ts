// Test runner config: forked processes (Temporal's native worker and SIGKILL tests need real processes).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.tools/**', '.data/**'],
    globalSetup: ['test/global-setup.ts'],
    coverage: {
      provider: 'v8',
      // The pure algorithm must be fully covered by its own tests (issue 3); `npm test` enforces it.
      include: ['dro/**/*.ts'],
      exclude: ['**/*.test.ts'],
      thresholds: { statements: 100 },
      reportsDirectory: '.data/coverage',
      reporter: ['text-summary', 'text'],
    },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
