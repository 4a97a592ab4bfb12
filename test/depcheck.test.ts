// The import rules of .dependency-cruiser.cjs (`npm run depcheck`) really fire: a small tree laid out like
// the project's passes them, and each import that breaks a rule, added to it, is reported under that rule.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const DEPCRUISE = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

/** Files that keep every rule: each layer imports only what it may. */
const CLEAN: Record<string, string> = {
  'dro/a.ts': 'export const a = 1;\n',
  'storage/s.ts': 'export const s = 1;\n',
  'datasets/d.ts': "import { a } from '../dro/a.js';\nimport { s } from '../storage/s.js';\nexport const d = a + s;\n",
  'engine/ort.ts': "import * as ort from 'onnxruntime-node';\nexport { ort };\n",
  'engine/inner.ts': "import { a } from '../dro/a.js';\nexport const inner = a;\n",
  'engine/index.ts': "export { inner } from './inner.js';\nexport { ort } from './ort.js';\n",
  'activities/errors.ts': 'export const E = 1;\n',
  'activities/k.ts': "import { inner } from '../engine/index.js';\nimport { d } from '../datasets/d.js';\nexport const k = inner + d;\n",
  'workflows/w.ts': "import { a } from '../dro/a.js';\nimport { E } from '../activities/errors.js';\nimport type { k } from '../activities/k.js';\nexport type K = typeof k;\nexport const w = a + E;\n",
  'workers/r.ts': "import { w } from '../workflows/w.js';\nimport { k } from '../activities/k.js';\nexport const r = w + k;\n",
  'cli/l.ts': "import { r } from '../workers/r.js';\nimport { inner } from '../engine/index.js';\nexport const l = r + inner;\n",
  'scripts/c.ts': "import { r } from '../workers/r.js';\nimport { inner } from '../engine/index.js';\nimport { l } from '../cli/l.js';\nexport const c = r + inner + l;\n",
  'test/h.ts': "import { c } from '../scripts/c.js';\nimport { inner } from '../engine/inner.js';\nexport const h = c + inner;\n",
  'engine/inner.test.ts': "import { h } from '../test/h.js';\nimport { inner } from './inner.js';\nexport const t = h + inner;\n",
};

/** One file per rule, each with an import that breaks it. */
const BROKEN: [file: string, code: string, rule: string][] = [
  ['dro/bad.ts', "import { s } from '../storage/s.js';\nexport const x = s;\n", 'dro-imports-nothing-of-ours'],
  ['storage/bad.ts', "import { a } from '../dro/a.js';\nexport const x = a;\n", 'storage-imports-only-storage'],
  ['datasets/bad.ts', "import { inner } from '../engine/index.js';\nexport const x = inner;\n", 'datasets-below-engine-and-activities'],
  ['engine/bad.ts', "import { k } from '../activities/k.js';\nexport const x = k;\n", 'engine-below-activities'],
  ['activities/bad.ts', "import type { K } from '../workflows/w.js';\nexport const x: K = 1;\n", 'activities-below-workflows'],
  ['workflows/bad.ts', "import { k } from '../activities/k.js';\nexport const x = k;\n", 'workflows-import-only-dro-as-code'],
  ['workflows/fs.ts', "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n", 'workflows-no-node-builtins'],
  ['workflows/types.ts', "import type { r } from '../workers/r.js';\nexport type X = typeof r;\n", 'workflows-types-from-below-only'],
  ['workers/bad.ts', "import { c } from '../scripts/c.js';\nexport const x = c;\n", 'workers-below-scripts'],
  ['activities/side.ts', "import { inner } from '../engine/inner.js';\nexport const x = inner;\n", 'engine-front-door'],
  ['workers/cli.ts', "import { l } from '../cli/l.js';\nexport const x = l;\n", 'only-the-top-imports-the-cli'],
  ['cli/dev.ts', "import { c } from '../scripts/c.js';\nexport const x = c;\n", 'nothing-imports-the-dev-tools'],
  ['datasets/dev.ts', "import { c } from '../scripts/c.js';\nexport const x = c;\n", 'nothing-imports-the-dev-tools'],
  ['storage/helper.ts', "import { h } from '../test/h.js';\nexport const x = h;\n", 'no-test-code-in-the-product'],
  ['engine/session.ts', "import * as ort from 'onnxruntime-node';\nexport const x = ort;\n", 'one-door-to-onnxruntime'],
  ['storage/sdk.ts', "import { S3Client } from '@aws-sdk/client-s3';\nexport const x = S3Client;\n", 'one-door-to-aws-sdk'],
  ['storage/ring-a.ts', "import { b } from './ring-b.js';\nexport const a = () => b;\n", 'no-circular'],
];
/** The circle's other half; the cruise reports a circle once, at either of its files. */
const RING_B = { 'storage/ring-b.ts': "import { a } from './ring-a.js';\nexport const b = () => a;\n" };

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

let dir: string;

async function write(files: Record<string, string>): Promise<void> {
  for (const [file, code] of Object.entries(files)) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), code);
  }
}

/** Runs the project's depcheck on every file of the tree; the violations it reports. */
function depcheck(files: string[]): Violation[] {
  const run = spawnSync(process.execPath, [DEPCRUISE, '--config', join(ROOT, '.dependency-cruiser.cjs'), '--output-type', 'json', ...files], { cwd: dir, encoding: 'utf8' });
  if (run.stdout.trim() === '') throw new Error(`depcruise printed nothing (exit ${run.status}): ${run.stderr}`);
  const result = JSON.parse(run.stdout) as { summary: { violations: Violation[]; totalCruised: number } };
  expect(result.summary.totalCruised).toBeGreaterThanOrEqual(files.length);
  return result.summary.violations;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-depcheck-'));
  await copyFile(join(ROOT, 'tsconfig.json'), join(dir, 'tsconfig.json'));
  // The rules about onnxruntime-node and @aws-sdk name the packages as they resolve.
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  await write(CLEAN);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('npm run depcheck', () => {
  it('passes a tree whose layers import only what they may (tests and test/ reach anywhere)', () => {
    expect(depcheck(Object.keys(CLEAN))).toEqual([]);
  });

  it('reports each broken rule at the file that breaks it, and nothing at the files that keep them', async () => {
    await write({ ...Object.fromEntries(BROKEN.map(([file, code]) => [file, code])), ...RING_B });
    const violations = depcheck([...Object.keys(CLEAN), ...BROKEN.map(([file]) => file), ...Object.keys(RING_B)]);
    const rulesAt = (file: string): string[] => violations.filter((v) => v.from === file || (file === 'storage/ring-a.ts' && v.from in RING_B)).map((v) => v.rule.name);
    for (const [file, , rule] of BROKEN) expect(rulesAt(file), file).toContain(rule);
    const brokenFiles = new Set([...BROKEN.map(([file]) => file), ...Object.keys(RING_B)]);
    expect(violations.filter((v) => !brokenFiles.has(v.from))).toEqual([]);
  });
});
