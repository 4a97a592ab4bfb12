// The README stays true in a fresh clone: its run-config table is the one the schema generates, the
// files it names exist in the repository, every environment variable the code reads is in its table,
// and the example configs it points to are valid.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withCurrentConfigTable } from '../scripts/dev/config-doc.js';
import { readRunConfig } from '../cli/client.js';
import { runConfigFieldDocs } from '../dro/config.js';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

it('README.md carries the current run-config table (run `npm run config:doc` after changing dro/config.ts)', () => {
  expect(withCurrentConfigTable(readme)).toBe(readme);
});

describe('README.md in a fresh clone', () => {
  const tracked = spawnSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  const topLevel = new Set(tracked.map((f) => f.split('/')[0]!));

  it('names only files and folders the repository has (paths under its own top-level folders)', () => {
    const named = [...readme.matchAll(/`([A-Za-z0-9_.-]+\/[A-Za-z0-9_./-]*)`|\]\(([A-Za-z0-9_./-]+)\)/g)].map((m) => (m[1] ?? m[2])!);
    const ours = named.filter((p) => topLevel.has(p.split('/')[0]!) && !p.includes('*'));
    expect(ours.length).toBeGreaterThan(40);
    const missing = ours.filter((p) => !existsSync(join(root, p)));
    expect(missing).toEqual([]);
  });

  it('points outside the repository only for the datasets folder, which DRO_DATASETS_DIR moves', () => {
    const outside = [...readme.matchAll(/\.\.\/[A-Za-z0-9_./-]+/g)].map((m) => m[0]);
    expect(outside.length).toBeGreaterThan(0);
    for (const p of outside) expect(p, p).toMatch(/^\.\.\/shared\/datasets\/?$/);
  });

  it('lists every DRO_ environment variable the code reads', () => {
    const sources = tracked.filter((f) => f.endsWith('.ts') && !f.includes('.test.') && !f.startsWith('test/'));
    const read = new Set<string>();
    for (const f of sources) for (const m of readFileSync(join(root, f), 'utf8').matchAll(/\bDRO_[A-Z0-9_]*[A-Z0-9]\b/g)) read.add(m[0]);
    expect(read.size).toBeGreaterThan(10);
    const table = readme.slice(readme.indexOf('### Environment variables'), readme.indexOf('## Storage'));
    expect([...read].filter((v) => !table.includes(`\`${v}\``))).toEqual([]);
  });

  it('ships example configs that dro train accepts', async () => {
    const examples = readdirSync(join(root, 'examples'), { recursive: true, encoding: 'utf8' }).filter((f) => /\.(json|ya?ml)$/.test(f));
    expect(examples).toContain(join('own-data', 'config.yaml'));
    for (const file of [...examples.map((f) => join(root, 'examples', f)), join(root, 'scripts', 'quickstart', 'quickstart.config.json')]) {
      const config = await readRunConfig(file, root);
      expect(config.schedule.totalSteps, file).toBeGreaterThan(0);
    }
  });
});

it('docs/trl-mapping.md names only config fields that exist in its "ours" columns (rename one and this fails)', () => {
  const fields = new Set(runConfigFieldDocs().map((f) => f.path));
  const known = (name: string): boolean => (name.endsWith('.*') ? [...fields].some((f) => f.startsWith(name.slice(0, -1))) : fields.has(name));
  // Backticked dotted names in the first cell of every table whose first header is "ours".
  const oursNames = (markdown: string): string[] => {
    const names: string[] = [];
    let inOurs = false;
    for (const line of markdown.split('\n')) {
      if (!line.startsWith('|')) inOurs = false;
      else if (/^\|\s*ours\s*\|/.test(line)) inOurs = true;
      else if (inOurs) names.push(...[...line.split('|')[1]!.matchAll(/`([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)+(?:\.\*)?)`/g)].map((m) => m[1]!));
    }
    return names;
  };
  const named = oursNames(readFileSync(join(root, 'docs', 'trl-mapping.md'), 'utf8'));
  expect(named.length).toBeGreaterThan(60);
  expect(named.filter((n) => !known(n))).toEqual([]);
  expect(oursNames('| ours | TRL |\n|---|---|\n| `rollout.groupSizes` | `num_generations` |').filter((n) => !known(n))).toEqual(['rollout.groupSizes']);
});
