// `npm run experiment:reproduce -- --quick` on the local services: every arm runs as a real trainingRun;
// a driver killed (SIGKILL) after its first run leaves no worker behind and, started again, keeps the
// finished run and completes the rest; and the report is generated from the runs' records (the same
// records give the same report, and a record changed in a copy of the store changes the report made from
// that copy).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeys } from '../activities/records.js';
import { parseExperimentConfig, planExperiment } from '../scripts/experiment/plan.js';
import { trainingDeadlineMs, waitFor } from './training-harness.js';

const ROOT = join(import.meta.dirname, '..');
const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const DRIVER = join(ROOT, 'scripts', 'experiment', 'reproduce.ts');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-reproduce-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Driver {
  output: () => string;
  exited: Promise<number | null>;
  kill: () => void;
}

/** The driver as a child process (only its own PID is ever signalled). */
function driver(...args: string[]): Driver {
  const child = spawn(process.execPath, ['--import', TSX, DRIVER, '--quick', '--tag', TAG, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  return { output: () => output, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))), kill: () => child.kill('SIGKILL') };
}

/** Whether `pid` has ended (a zombie waiting for its new parent to reap it has ended too). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
}

// A tag of its own, so runs of this test on a dev server that remembers earlier ones start afresh.
const TAG = `t${Date.now().toString(36)}`;
const plan = async () => planExperiment(parseExperimentConfig(JSON.parse(await readFile(join(ROOT, 'scripts', 'experiment', 'reproduce.config.json'), 'utf8')), 'config'), 'quick', { store: join(dir, 'store'), tag: TAG });

describe('experiment:reproduce --quick', () => {
  it('completes what an interrupted driver left, without running a finished run again, and reports from the records', async () => {
    const { runs } = await plan();
    const store = join(dir, 'store');
    const out = join(dir, 'out');
    const first = driver('--store', store, '--out', out);
    // Killed outright once the first run has finished and the second has started: no handler of the
    // driver's runs, so its worker must notice by itself that it is orphaned and stop. Before that: the
    // driver's worker start and a whole --quick run.
    await waitFor('the second run to start', () => (first.output().includes(`${runs[1]!.runId}: started`) ? true : undefined), trainingDeadlineMs(runs[0]!.config.schedule.totalSteps), {
      context: () => `the driver printed:\n${first.output().slice(-3000)}`,
    });
    const workerPid = Number(/worker pid (\d+) ready/.exec(first.output())?.[1]);
    expect(workerPid).toBeGreaterThan(0);
    first.kill();
    expect(await first.exited).not.toBe(0);
    expect(first.output()).not.toContain(`${runs[2]!.runId}: started`);
    // It notices its parent is gone and shuts down: no training.
    await waitFor(`the killed driver's worker (pid ${workerPid}) to stop`, () => (gone(workerPid) ? true : undefined), trainingDeadlineMs(0), {
      context: () => `the driver printed:\n${first.output().slice(-3000)}`,
    });

    const second = driver('--store', store, '--out', out);
    expect(await second.exited, second.output()).toBe(0);
    const log = second.output();
    expect(log).toContain(`${runs[0]!.runId}: completed before; kept`);
    expect(log).not.toContain(`${runs[0]!.runId}: started`);
    expect(log).toMatch(new RegExp(`${runs[1]!.runId}: (resumed|running already|completed before)`));
    for (const r of runs.slice(2)) expect(log).toContain(`${r.runId}: started`);

    const report = await readFile(join(out, 'reproduction.md'), 'utf8');
    for (const r of runs) expect(report).toMatch(new RegExp(`\`${r.runId}\` \\| 4 \\| 0, 2, 4 \\|`));
    expect(report).toMatch(/\| arm \| pass@1 \| pass@2 \|/);
    expect(report).toMatch(/\| \(a\) R3 beats the aggregate reward \| \*\*inconclusive\*\* \|/);
    // Both invocations' time counts: the killed one's up to its first finished run.
    expect(report).toMatch(/wall time \d+\.\d minutes over 2 driver invocations \(1 ended before completing every run; each counts until its last finished run\)/);
    for (const chart of ['accuracy', 'reward', 'reasoning-length']) expect((await readFile(join(out, `reproduction-${chart}.png`))).subarray(1, 4).toString()).toBe('PNG');

    // The same records give the same report; a changed record changes exactly what it feeds.
    const again = join(dir, 'again');
    const regenerated = driver('--store', store, '--out', again, '--report-only');
    expect(await regenerated.exited, regenerated.output()).toBe(0);
    expect(await readFile(join(again, 'reproduction.md'), 'utf8')).toBe(report);

    const copy = join(dir, 'copy');
    await cp(store, copy, { recursive: true });
    const r3 = runs.find((r) => r.arm === 'r3')!;
    const evaluation = join(copy, runKeys.evaluation(r3.runId, 4));
    const record = JSON.parse(await readFile(evaluation, 'utf8')) as { metrics: Record<string, number> };
    record.metrics['pass@1'] = 0.777;
    await writeFile(evaluation, JSON.stringify(record));
    const changed = join(dir, 'changed');
    const fromCopy = driver('--store', copy, '--out', changed, '--report-only');
    expect(await fromCopy.exited, fromCopy.output()).toBe(0);
    const changedReport = await readFile(join(changed, 'reproduction.md'), 'utf8');
    expect(changedReport).toMatch(/\| r3 \| 0\.777 \|/);
    expect(report).not.toMatch(/\| r3 \| 0\.777 \|/);
  }, 600_000);
});
