// The lint rules that guard the workflow sandbox, the engine's front door and floating promises really fire (and only there), and
// npm test checks the project's own files, not whatever else lies in the folder.
import { spawnSync } from 'node:child_process';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const eslint = new ESLint({ cwd: root });

/**
 * Lints `code` as if it were `file`. The type-aware rules need the file on disk inside the project,
 * so it is written under a unique name and removed again (with its folder, if the folder was new).
 */
async function ruleIds(code: string, file: string): Promise<string[]> {
  // The unique part goes before `.test.ts`, so a probe named as a test is linted as one.
  const path = join(root, file.replace(/(\.test)?\.ts$/, (ending) => `-${process.pid}-${Math.random().toString(36).slice(2, 8)}${ending}`));
  const madeDir = await mkdir(dirname(path), { recursive: true });
  await writeFile(path, code);
  try {
    const [result] = await eslint.lintFiles([path]);
    return (result?.messages ?? []).map((m) => m.ruleId ?? `fatal: ${m.message}`);
  } finally {
    await rm(path, { force: true });
    if (madeDir) await rmdir(madeDir).catch(() => undefined);
  }
}

describe('workflow sandbox imports', () => {
  const forbidden = [
    "import { readFile } from 'node:fs/promises';",
    "import fs from 'fs';",
    "import { Worker } from 'worker_threads';",
    "import * as ort from 'onnxruntime-node';",
    "import { S3Client } from '@aws-sdk/client-s3';",
    "import { commitCheckpoint } from '../storage/checkpoints.js';",
    "import { commitCheckpoint } from '../dro/../storage/checkpoints.js';",
    "import { createActivities } from '../activities/index.js';",
  ];
  for (const line of forbidden) {
    it(`rejects in workflows/: ${line}`, async () => {
      const ids = await ruleIds(`${line}\nexport const x = 1;\n`, 'workflows/lint-probe.ts');
      expect(ids).toContain('@typescript-eslint/no-restricted-imports');
    });
  }

  it('allows the workflow SDK and type-only imports of our modules', async () => {
    const code = [
      "import { proxyActivities } from '@temporalio/workflow';",
      "import type { BlobStore } from '../storage/blob-store.js';",
      'export type Store = BlobStore;',
      'export const acts = proxyActivities<{ ping(): Promise<void> }>({ startToCloseTimeout: 1000 });',
      '',
    ].join('\n');
    expect(await ruleIds(code, 'workflows/lint-probe.ts')).toEqual([]);
  });

  it('allows code imports of the pure dro/ modules (an update validator runs them)', async () => {
    const code = "import { configAt } from '../dro/hyperparameters.js';\nexport const at = configAt;\n";
    expect(await ruleIds(code, 'workflows/lint-probe.ts')).toEqual([]);
  });

  it('allows code imports of activities/errors.ts (the one list of fatal failure types)', async () => {
    const code = "import { FATAL_FAILURES } from '../activities/errors.js';\nexport const fatal = FATAL_FAILURES;\n";
    expect(await ruleIds(code, 'workflows/lint-probe.ts')).toEqual([]);
  });

  it('does not apply the sandbox rules outside workflows/', async () => {
    expect(await ruleIds("import { readFile } from 'node:fs/promises';\nexport const r = readFile;\n", 'storage/lint-probe.ts')).toEqual([]);
  });
});

describe("the engine's front door", () => {
  const deep = "import { PolicyEngine } from '../engine/policy.js';\nexport const e = PolicyEngine;\n";

  it('refuses a deep import of engine/ from activities/ and the CLI', async () => {
    expect(await ruleIds(deep, 'activities/lint-probe.ts')).toContain('@typescript-eslint/no-restricted-imports');
    expect(await ruleIds(deep.replace("'../engine/", "'../../engine/"), 'cli/commands/lint-probe.ts')).toContain('@typescript-eslint/no-restricted-imports');
  });

  it('allows engine/index.js, and lets tests reach inside', async () => {
    expect(await ruleIds("import { EngineClient } from '../engine/index.js';\nexport const c = EngineClient;\n", 'activities/lint-probe.ts')).toEqual([]);
    expect(await ruleIds(deep, 'activities/lint-probe.test.ts')).toEqual([]);
  });
});

describe('floating promises', () => {
  it('are errors anywhere', async () => {
    const code = 'async function work(): Promise<number> {\n  return 1;\n}\nexport function run(): void {\n  work();\n}\n';
    expect(await ruleIds(code, 'storage/lint-probe.ts')).toContain('@typescript-eslint/no-floating-promises');
  });
});

describe("npm test's typecheck and lint", () => {
  it('check the files git tracks, so a stray scratch file cannot fail them (and a tracked file with the same faults does)', async () => {
    const stray = join(root, 'scripts', `scratch-${process.pid}.ts`);
    // A type error and a floating promise: both steps would fail on it.
    await writeFile(stray, 'const n: number = "text";\nasync function f(): Promise<void> {}\nf();\nexport { n };\n');
    try {
      const npm = (script: string) => spawnSync('npm', ['run', '-s', script], { cwd: root, encoding: 'utf8' });
      const typecheck = npm('typecheck');
      expect(typecheck.stdout + typecheck.stderr).toBe('');
      expect(typecheck.status).toBe(0);
      const lint = npm('lint');
      expect(lint.stdout).not.toContain('scratch-');
      expect(lint.status).toBe(0);
      // The same file, once tracked (intent-to-add), is checked.
      expect(spawnSync('git', ['add', '-N', stray], { cwd: root }).status).toBe(0);
      const tracked = npm('typecheck');
      expect(tracked.stdout).toContain(`scratch-${process.pid}.ts(1,7): error TS2322`);
      expect(tracked.status).not.toBe(0);
    } finally {
      spawnSync('git', ['rm', '-q', '--cached', '--force', stray], { cwd: root });
      await rm(stray, { force: true });
    }
  }, 180_000);
});
