// `dro report` on a directory store with synthetic metrics, evaluations and a checkpoint written at the
// real keys: every chart is well-formed SVG with a PNG of matching size, index.html links all of them and
// lists every evaluation, absent fields give skipped charts, and a run without metrics is one clear error.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHECKPOINT_STATE_VERSION, runKeys, writeEvaluation, writeJson, type CheckpointState, type StepMetricsRecord } from '../activities/records.js';
import { parseRunConfig } from '../dro/config.js';
import { PNG_SCALE, writeRunReport } from '../cli/commands/report.js';
import { RunError } from '../cli/client.js';
import { commitCheckpoint } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';

const runId = 'report-run';
const evalSteps = [4, 8];
let dir: string;
let uri: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-report-'));
  uri = join(dir, 'store');
  const store = await openBlobStore(uri);
  for (let step = 1; step <= 12; step++) {
    const r3 = 0.2 + step * 0.03;
    // No `temperature` anywhere (records from before it was recorded lack it): that chart must be skipped, not drawn empty.
    const metrics: StepMetricsRecord = {
      step,
      reward: { mean: r3, std: 0.1 },
      rewards: { r3: { mean: r3, std: 0.1 }, aggregate: { mean: r3 - 0.5, std: 0.2 }, lengthPenalty: { mean: 0.9, std: 0.05 } },
      r3TokenWeights: { meanStd: 1, maxStd: 3, topDecileWeightShare: 0.2 },
      loss: 1 / step,
      gradNorm: 0.5,
      kl: step * 1e-4,
      clipFraction: 0.01,
      learningRate: 1e-5 * Math.min(1, step / 4),
      klBeta: 0.001,
      completionTokens: 40 + step,
      truncatedShare: step % 3 === 0 ? 0.25 : 0,
      malformedShare: 0,
      skippedGroupShare: step % 4 === 0 ? 0.5 : 0,
      tokens: { generated: 100, scored: 200, trained: 100 },
      timing: { rollout: 1, score: 1, reward: 0.1, update: 2 },
    };
    await writeJson(store, runKeys.metrics(runId, step), metrics);
  }
  for (const step of evalSteps) {
    await writeEvaluation(store, runId, { step, metrics: { exactMatch: step / 20, rouge1: step / 10 }, examples: 16, cached: false, seconds: 3, predictions: [] });
  }
  const state: CheckpointState = {
    formatVersion: CHECKPOINT_STATE_VERSION,
    runId,
    step: 8,
    position: { step: 8, cursor: { subsetVersion: 0, epoch: 0, position: 16, seed: 1 }, subsetVersion: 0 },
    subset: [],
    config: parseRunConfig({ dro: { reward: 'r3', klBeta: 0.001 } }),
    configHash: 'not checked here',
    hyperparameters: [],
    runtime: { onnxruntimeVersion: '1', cpuModel: 'test', intraOpThreads: 1, executionProvider: 'cpu' },
  };
  await commitCheckpoint(store, runId, 8, { 'model.safetensors': new Uint8Array(64) }, state);
  await store.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Width and height from a PNG's IHDR chunk, after checking the signature and chunk type. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(png.toString('latin1', 12, 16)).toBe('IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

it('writes every chart as SVG and PNG and an index.html that links them all', async () => {
  const outDir = join(dir, 'report');
  const { files, charts } = await writeRunReport({ uri, runId, outDir });
  expect(charts).toEqual(['reward', 'loss', 'kl', 'kl-beta', 'completion-length', 'truncation', 'skipped-groups', 'learning-rate', 'evaluation']);
  expect(files.map((f) => basename(f)).sort()).toEqual([...charts.flatMap((c) => [`${c}.svg`, `${c}.png`]), 'index.html'].sort());
  expect((await readdir(outDir)).sort()).toEqual(files.map((f) => basename(f)).sort());

  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
  for (const chart of charts) {
    const svg = await readFile(join(outDir, `${chart}.svg`), 'utf8');
    expect(XMLValidator.validate(svg), chart).toBe(true);
    const root = (parser.parse(svg) as { svg?: { width?: string; height?: string } }).svg;
    expect(root, `${chart}.svg has an <svg> root`).toBeDefined();
    const width = Number(root!.width);
    const height = Number(root!.height);
    expect(width).toBeGreaterThan(100);
    expect(height).toBeGreaterThan(100);
    const png = pngSize(await readFile(join(outDir, `${chart}.png`)));
    expect(png.width).toBeGreaterThan(100);
    expect(png.height).toBeGreaterThan(100);
    expect(png).toEqual({ width: Math.round(width * PNG_SCALE), height: Math.round(height * PNG_SCALE) });
  }
  // The reward chart carries every reward kind as its own line, named in the legend.
  const reward = await readFile(join(outDir, 'reward.svg'), 'utf8');
  for (const series of ['training reward', 'r3', 'aggregate', 'lengthPenalty']) expect(reward).toContain(`>${series}</text>`);
  const evaluation = await readFile(join(outDir, 'evaluation.svg'), 'utf8');
  for (const series of ['exactMatch', 'rouge1']) expect(evaluation).toContain(`>${series}</text>`);

  const html = await readFile(join(outDir, 'index.html'), 'utf8');
  const links = new Set([...html.matchAll(/(?:href|src)="([^"]+)"/g)].map((m) => m[1]));
  for (const f of files.filter((f) => !f.endsWith('index.html'))) expect(links, `index.html links ${basename(f)}`).toContain(basename(f));
  expect([...html.matchAll(/<tr><td>(\d+)<\/td>/g)].map((m) => Number(m[1]))).toEqual(evalSteps);
  expect(html).toContain('<td>0.4000</td>'); // rouge1 at step 4
  expect(html).toMatch(/Skipped \(no values recorded\): temperature\./);
  expect(html).toContain('From checkpoint 8.');
  expect(html).toContain('&quot;klBeta&quot;: 0.001');
});

it('refuses a run without metrics with one line naming the run and the store', async () => {
  const outDir = join(dir, 'none');
  const attempt = writeRunReport({ uri, runId: 'no-such-run', outDir });
  await expect(attempt).rejects.toThrow(RunError);
  await expect(attempt).rejects.toThrow(new RegExp(`^run no-such-run has no metrics in ${uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; nothing to report$`));
  await expect(readdir(outDir)).rejects.toThrow(/ENOENT/);
});
