// The README stays true: its run-config table is the one the schema generates.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { withCurrentConfigTable } from '../scripts/config-doc.js';

it('README.md carries the current run-config table (run `npm run config:doc` after changing dro/config.ts)', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  expect(withCurrentConfigTable(readme)).toBe(readme);
});
