// The run's store records on a directory store: each writer stores exactly the compact JSON of what it was
// given under its key, each reader gives that record back (in key order for the listers), and a record
// that is not valid JSON or not its shape is refused with the key and the first field that does not fit.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../dro/config.js';
import { checkpointPrefix, commitCheckpoint, loadCheckpoint } from '../storage/checkpoints.js';
import { DirectoryBlobStore } from '../storage/dir-store.js';
import {
  CHECKPOINT_STATE_VERSION,
  checkpointState,
  readChangeLog,
  readCheckpointState,
  readEvaluation,
  readEvaluations,
  readFilterRounds,
  readStepMetrics,
  readSubsetRecord,
  RecordError,
  runKeys,
  writeChangeLog,
  writeEvaluation,
  writeFilterRound,
  writeJson,
  writeStepMetrics,
  writeSubset,
  type CheckpointState,
  type EvaluationRecord,
  type StepMetricsRecord,
} from './records.js';

const roots: string[] = [];
afterAll(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});

let store: DirectoryBlobStore;
beforeEach(async () => {
  const root = await mkdtemp(join(tmpdir(), 'dro-records-'));
  roots.push(root);
  store = new DirectoryBlobStore(root);
});

const run = 'run-1';
const text = async (key: string): Promise<string> => new TextDecoder().decode(await store.get(key));

const metrics = (step: number): Required<StepMetricsRecord> => ({
  step,
  reward: { mean: 0.25 * step, std: 0.5 },
  rewards: { r3: { mean: 0.25 * step, std: 0.5 }, lengthPenalty: { mean: 1, std: 0 } },
  r3TokenWeights: { meanStd: 0.1, maxStd: 0.4, topDecileWeightShare: 0.3 },
  loss: step === 1 ? null : 0.7,
  gradNorm: 1.5,
  kl: null,
  clipFraction: 0,
  learningRate: 1e-5,
  klBeta: 0.01,
  temperature: 1,
  completionTokens: 12.5,
  truncatedShare: 0,
  malformedShare: 0.25,
  skippedGroupShare: 0.5,
  tokens: { generated: 40, scored: 90, trained: 40 },
  timing: { rollout: 1.25, update: 2 },
});

const evaluation = (step: number): EvaluationRecord => ({
  step,
  metrics: { accuracy: 0.5, 'pass@1': 0.5 },
  examples: 2,
  cached: false,
  seconds: 3.5,
  predictions: [
    { exampleId: 'a', completions: ['<think>x</think> 1'] },
    { exampleId: 'b', completions: ['2'] },
  ],
});

const state = (step: number): CheckpointState => ({
  formatVersion: CHECKPOINT_STATE_VERSION,
  runId: run,
  step,
  position: { step, cursor: { subsetVersion: 0, epoch: 0, position: 4, seed: 7 }, subsetVersion: 0 },
  subset: ['a', 'b'],
  config: parseRunConfig({ seed: 7 }),
  configHash: 'abc',
  hyperparameters: [{ fromStep: 2, learningRate: 3e-4 }],
  runtime: { onnxruntimeVersion: '1.0', cpuModel: 'cpu', intraOpThreads: 2, executionProvider: 'cpu' },
});

describe('writers and readers', () => {
  it('store the compact JSON of the record under its key and read it back, listers in step order', async () => {
    for (const step of [10, 2, 1]) await writeStepMetrics(store, run, metrics(step));
    expect(await text(runKeys.metrics(run, 2))).toBe(`${JSON.stringify(metrics(2))}\n`);
    const read = await readStepMetrics(store, run);
    expect(read.map((m) => m.step)).toEqual([1, 2, 10]);
    // Field order is the writer's: a reader hands back the record as stored.
    expect(read.map((m) => JSON.stringify(m))).toEqual([1, 2, 10].map((s) => JSON.stringify(metrics(s))));

    for (const step of [8, 0]) await writeEvaluation(store, run, evaluation(step));
    expect(await text(runKeys.evaluation(run, 8))).toBe(`${JSON.stringify(evaluation(8))}\n`);
    expect(await readEvaluation(store, run, 8)).toEqual(evaluation(8));
    expect(await readEvaluation(store, run, 4)).toBeUndefined();
    expect((await readEvaluations(store, run)).map((e) => e.step)).toEqual([0, 8]);

    const round = { round: 0, step: 0, tokens: { generated: 10, scored: 20 }, decisions: [{ exampleId: 'a', kept: true, stage: 'kept' as const, hardness: 3, score: 0.5 }], emptyRoundKeptPrevious: false };
    await writeFilterRound(store, run, round);
    expect(await text(runKeys.filterRound(run, 0))).toBe(`${JSON.stringify(round)}\n`);
    expect(await readFilterRounds(store, run)).toEqual([round]);

    const subset = { version: 1, round: 0, subset: ['a'] };
    await writeSubset(store, run, subset);
    expect(await text(runKeys.subset(run, 1))).toBe(`${JSON.stringify(subset)}\n`);
    expect(await readSubsetRecord(store, run, 1)).toEqual(subset);
    await expect(readSubsetRecord(store, run, 2)).rejects.toThrow(`blob not found: ${runKeys.subset(run, 2)}`);

    expect(await readChangeLog(store, run)).toBeUndefined();
    const log = { runId: run, changes: [{ fromStep: 3, temperature: 0.8 }] };
    await writeChangeLog(store, log);
    expect(await text(runKeys.hyperparameters(run))).toBe(`${JSON.stringify(log)}\n`);
    expect(await readChangeLog(store, run)).toEqual(log);
  });

  it('read a checkpoint state from a loaded checkpoint or alone', async () => {
    await commitCheckpoint(store, run, 3, { 'model.safetensors': new Uint8Array(8) }, state(3));
    expect(checkpointState(await loadCheckpoint(store, run, 3))).toEqual(state(3));
    expect(await readCheckpointState(store, run, 3)).toEqual(state(3));
  });

  it('keep a field a newer writer added', async () => {
    await writeJson(store, runKeys.evaluation(run, 1), { ...evaluation(1), judge: { wins: 3 } });
    expect(await readEvaluation(store, run, 1)).toEqual({ ...evaluation(1), judge: { wins: 3 } });
  });

  it('accept metrics from before klBeta and temperature were recorded', async () => {
    const { klBeta: _klBeta, temperature: _temperature, ...older } = metrics(1);
    await writeJson(store, runKeys.metrics(run, 1), older);
    expect(await readStepMetrics(store, run)).toEqual([older]);
  });
});

describe('a record that is not its shape', () => {
  const where = (key: string): string => `${key} in ${store.location}`;

  it('is refused with its key and the field', async () => {
    const { loss: _loss, ...noLoss } = metrics(3);
    await writeJson(store, runKeys.metrics(run, 3), noLoss);
    const refused = readStepMetrics(store, run);
    await expect(refused).rejects.toThrow(RecordError);
    await expect(refused).rejects.toThrow(`${where(runKeys.metrics(run, 3))} is not a step's metrics record: loss: `);

    await writeJson(store, runKeys.evaluation(run, 2), { ...evaluation(2), predictions: [{ exampleId: 'a', completions: [7] }] });
    await expect(readEvaluation(store, run, 2)).rejects.toThrow(`${where(runKeys.evaluation(run, 2))} is not an evaluation record: predictions.0.completions.0: `);

    await writeJson(store, runKeys.filterRound(run, 1), { round: 1, step: 5, decisions: [], emptyRoundKeptPrevious: 'no' });
    await expect(readFilterRounds(store, run)).rejects.toThrow(`${where(runKeys.filterRound(run, 1))} is not a filtering round record: emptyRoundKeptPrevious: `);

    await writeJson(store, runKeys.hyperparameters(run), { runId: run, changes: [3] });
    await expect(readChangeLog(store, run)).rejects.toThrow(`${where(runKeys.hyperparameters(run))} is not a change log record: changes.0: expected an object`);

    await writeJson(store, runKeys.subset(run, 1), ['a']);
    await expect(readSubsetRecord(store, run, 1)).rejects.toThrow(`${where(runKeys.subset(run, 1))} is not a subset record: the record: `);
  });

  it('is refused when it is not JSON', async () => {
    await store.put(runKeys.evaluation(run, 5), new TextEncoder().encode('{"step": 5,'));
    await expect(readEvaluation(store, run, 5)).rejects.toThrow(new RegExp(`^${where(runKeys.evaluation(run, 5)).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON \\(`));
  });

  it('is refused as a checkpoint state with the checkpoint named', async () => {
    const { configHash: _hash, ...noHash } = state(4);
    await commitCheckpoint(store, run, 4, { 'model.safetensors': new Uint8Array(8) }, noHash);
    const loaded = await loadCheckpoint(store, run, 4);
    expect(() => checkpointState(loaded)).toThrow(`${checkpointPrefix(run, 4)}state.json is not a checkpoint state: configHash: `);
    await expect(readCheckpointState(store, run, 4)).rejects.toThrow(`state.json of checkpoint 4 of run ${run} in ${store.location} is not a checkpoint state: configHash: `);
  });
});
