// `npm run config:doc`: rewrites the run-config reference table in README.md from the schema in
// dro/config.ts, so the README cannot drift from the defaults (test/docs.test.ts checks it).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runConfigMarkdownTable } from '../../dro/config.js';
import { REPO_ROOT } from '../services/dev-services.js';

export const TABLE_START = '<!-- run-config-table:start (npm run config:doc) -->';
export const TABLE_END = '<!-- run-config-table:end -->';

/** README text with the table between the markers replaced by the current one. */
export function withCurrentConfigTable(readme: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${TABLE_START} ... ${TABLE_END} section`);
  return `${readme.slice(0, start + TABLE_START.length)}\n${runConfigMarkdownTable()}\n${readme.slice(end)}`;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const file = join(REPO_ROOT, 'README.md');
  writeFileSync(file, withCurrentConfigTable(readFileSync(file, 'utf8')));
  console.log(`updated the run-config table in ${file}`);
}
