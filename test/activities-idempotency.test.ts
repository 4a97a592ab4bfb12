// Every activity called twice with the same input (as a Temporal retry would) returns the same result and
// leaves the store byte-identical; a repeated update does not apply twice; a restarted policy worker answers
// PolicyStateLost until it loads the checkpoint, then replays bit for bit; bad data is named by file and line.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities, type Activities } from '../activities/index.js';
import { readCheckpointState, readEvaluation, readFilterRounds, readStepMetrics, readSubsetRecord, runKeys } from '../activities/records.js';
import { PolicyHost, versionOf } from '../activities/policy-host.js';
import type { LoopPosition, RunRef, StepRecordInput } from '../activities/types.js';
import type { RunConfigInput } from '../dro/config.js';
import type { BlobStore } from '../storage/blob-store.js';
import { checkpointPrefix, latestCheckpoint, listCheckpoints, MANIFEST_FILE, type CheckpointManifest } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import { runRefOf, tinyRunConfig } from './training-harness.js';

// A model small enough that a whole step takes well under a second.
const TINY_MODEL = {
  vocab_size: 260,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 256,
  attention_bias: false,
};

let dir: string;
let storeUri: string;
let store: BlobStore;
const hosts: PolicyHost[] = [];

function runRef(runId: string, overrides: RunConfigInput = {}): RunRef {
  const config = tinyRunConfig(storeUri, {
    seed: 7,
    model: { init: TINY_MODEL, intraOpThreads: 1 },
    // Temperature 1: sampled chains differ, so a replay that drew other random numbers would show.
    rollout: { groupSize: 3, maxNewTokens: 24, batchSequences: 4 },
    sft: { steps: 3, batchSize: 4 },
    optimizer: { learningRate: 1e-3 },
    schedule: { totalSteps: 4 },
    checkpoint: { every: 1, keepLast: 10 },
    filtering: { every: 2, chainsPerPrompt: 2, candidatesPerRound: 4 },
    evaluation: { examples: 2, maxNewTokens: 16 },
    ...overrides,
  });
  return runRefOf(runId, config);
}

function newHost(): { host: PolicyHost; acts: Activities } {
  const host = new PolicyHost('test-queue');
  hosts.push(host);
  return { host, acts: createActivities({ host }) };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Every key under the run with the sha256 of its bytes. */
async function snapshot(runId: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const { key } of await store.list(`${runId}/`)) out[key] = sha(await store.get(key));
  return out;
}

/** The value without `seconds`, `…Seconds` and `timing` fields (at any depth): the only values a repeat may change. */
function withoutTiming(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutTiming);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).filter(([k]) => k !== 'seconds' && !k.endsWith('Seconds') && k !== 'timing').map(([k, v]) => [k, withoutTiming(v)]));
  }
  return value;
}

/**
 * Calls `call` twice; the second must return the first's result (outside timing) and leave every key of the
 * run byte-identical. Returns the first result and the store as the first call left it.
 */
async function twice<T>(runId: string, what: string, call: () => Promise<T>): Promise<{ result: T; keys: Record<string, string> }> {
  const result = await call();
  const keys = await snapshot(runId);
  const again = await call();
  expect(withoutTiming(again), `${what}: result of the repeat`).toEqual(withoutTiming(result));
  expect(await snapshot(runId), `${what}: store after the repeat`).toEqual(keys);
  return { result, keys };
}

/** The failure `promise` rejects with, which must be a non-retryable ApplicationFailure of `type`. */
async function failsWith(promise: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected an ApplicationFailure of type ${type}`).toBeInstanceOf(ApplicationFailure);
  const failure = err as ApplicationFailure;
  expect(failure.type, failure.message).toBe(type);
  expect(failure.nonRetryable).toBe(true);
  return failure;
}

const hostedParameters = async (host: PolicyHost, run: RunRef, step: number): Promise<string> => sha(await (await host.require(versionOf(run, step))).engine.exportParameters());

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-idempotency-'));
  storeUri = join(dir, 'store');
  store = await openBlobStore(storeUri);
});

afterAll(async () => {
  for (const host of hosts) await host.shutdown();
  await rm(dir, { recursive: true, force: true });
});

// The three tests of this block share one run, in order: the pipeline, then a repeat of its update, then
// a restarted worker replaying its next step.
describe('one run, every activity twice', () => {
  const run = (): RunRef => runRef('idem');
  const original = newHost();
  let step1: { batch: { cursor: LoopPosition['cursor'] }; position: LoopPosition };

  it('every activity returns the same result and leaves the store byte-identical when repeated', async () => {
    const r = run();
    const { acts, host } = original;
    const pin = await twice(r.runId, 'pinPolicyWorker', () => acts.pinPolicyWorker());
    expect(pin.result.queue).toBe('test-queue');

    const loaded = await twice(r.runId, 'loadPolicy (no checkpoint)', () => acts.loadPolicy(r));
    expect(loaded.result.checkpoint).toBeNull();
    await host.require(versionOf(r, -1));

    const warm = await twice(r.runId, 'warmStart', () => acts.warmStart(r));
    expect(warm.result.steps).toBe(3);
    expect(Number.isFinite(warm.result.finalLoss)).toBe(true);
    await host.require(versionOf(r, 0));

    const cursor = (await twice(r.runId, 'initialCursor', () => acts.initialCursor(r))).result;
    const filtered = await twice(r.runId, 'filterData (round 0)', () => acts.filterData(r, { step: 0, round: 0, cursor, subsetVersion: 0 }));
    expect(filtered.result.subsetVersion).toBe(1);
    expect(filtered.result.candidates).toBe(4);
    expect(Object.keys(filtered.keys)).toEqual(expect.arrayContaining([runKeys.subset(r.runId, 1), runKeys.filterRound(r.runId, 0)]));
    const [round] = await readFilterRounds(store, r.runId);
    expect(round?.tokens?.generated).toBe(filtered.result.generatedTokens);
    expect(round?.tokens?.scored).toBeGreaterThan(0);
    expect((await readSubsetRecord(store, r.runId, 1)).subset).toHaveLength(filtered.result.kept);

    const base: LoopPosition = { step: 0, cursor: filtered.result.cursor, subsetVersion: 1 };
    const saved0 = await twice(r.runId, 'saveCheckpoint 0', () => acts.saveCheckpoint(r, base));
    expect(saved0.result.deleted).toEqual([]);
    // A re-commit of identical content returns the existing checkpoint and writes nothing: manifest
    // (with its createdAt), state.json and the data files keep their bytes (the snapshot compared them all).
    const prefix0 = checkpointPrefix(r.runId, 0);
    const manifest0 = JSON.parse(new TextDecoder().decode(await store.get(prefix0 + MANIFEST_FILE))) as CheckpointManifest;
    expect(Object.keys(manifest0.files).sort()).toEqual(['model.safetensors', 'optimizer.safetensors', 'state.json']);
    expect(Object.keys(saved0.keys).filter((k) => k.startsWith(prefix0)).sort()).toEqual([MANIFEST_FILE, ...Object.values(manifest0.files).map((e) => e.object!)].map((f) => prefix0 + f).sort());
    expect((await latestCheckpoint(store, r.runId))?.step).toBe(0);

    const batch = (await twice(r.runId, 'sampleBatch', () => acts.sampleBatch(r, { cursor: base.cursor, subsetVersion: 1 }))).result;
    expect(batch.exampleIds).toHaveLength(2);
    const rollout = await twice(r.runId, 'rollout', () => acts.rollout(r, { step: 1, exampleIds: batch.exampleIds }));
    expect(rollout.result.sequences).toBe(6);
    expect(rollout.keys[runKeys.rollout(r.runId, 1)]).toBeDefined();
    const score = await twice(r.runId, 'scoreReference', () => acts.scoreReference(r, { step: 1 }));
    expect(score.keys[runKeys.scores(r.runId, 1)]).toBeDefined();
    const reward = await twice(r.runId, 'computeRewards', () => acts.computeRewards(r, { step: 1 }));
    expect(reward.keys[runKeys.rewards(r.runId, 1)]).toBeDefined();
    const update = await twice(r.runId, 'update', () => acts.update(r, { step: 1 }));
    expect(update.keys[runKeys.update(r.runId, 1)]).toBeDefined();
    await host.require(versionOf(r, 1));
    const record: StepRecordInput = { step: 1, rollout: rollout.result, score: score.result, reward: reward.result, update: update.result };
    const recorded = await twice(r.runId, 'recordStep', () => acts.recordStep(r, record));
    expect(recorded.keys[runKeys.metrics(r.runId, 1)]).toBeDefined();
    expect((await readStepMetrics(store, r.runId)).map((m) => [m.step, m.tokens.generated])).toEqual([[1, rollout.result.generatedTokens]]);

    const position: LoopPosition = { step: 1, cursor: batch.cursor, subsetVersion: 1 };
    await twice(r.runId, 'saveCheckpoint 1', () => acts.saveCheckpoint(r, position));
    expect((await listCheckpoints(store, r.runId)).map((c) => [c.step, c.valid])).toEqual([
      [0, true],
      [1, true],
    ]);
    expect((await readCheckpointState(store, r.runId, 1)).position).toEqual(position);

    const request = { runId: r.runId, store: r.config.checkpoint.store, step: 1 };
    const evaluated = await twice(r.runId, 'runEvaluation', async () => {
      const outcome = await acts.runEvaluation(request);
      if (outcome.step === null) throw new Error(outcome.message);
      const { cached: _cached, ...rest } = outcome;
      return rest;
    });
    expect(evaluated.result.examples).toBe(2);
    expect(evaluated.keys[runKeys.evaluation(r.runId, 1)]).toBeDefined();
    expect((await readEvaluation(store, r.runId, 1))?.predictions.map((p) => p.completions.length)).toEqual([1, 1]);
    const cached = await acts.runEvaluation(request);
    if (cached.step === null) throw new Error(cached.message);
    expect(cached.cached).toBe(true);
    // The newest checkpoint (1) is evaluated already: asking for "the newest" computes nothing either.
    expect(await acts.runEvaluation({ ...request, step: null })).toMatchObject({ step: 1, cached: true });
    // The stored record also holds the predictions; a cached answer must stay as small as a fresh one.
    expect(Object.keys(cached).sort()).toEqual(['cached', ...Object.keys(evaluated.result)].sort());

    // Loading is repeatable too once checkpoints exist, and it restores what was saved.
    const before = await hostedParameters(host, r, 1);
    const reloaded = await twice(r.runId, 'loadPolicy (checkpoint 1)', () => acts.loadPolicy(r));
    expect(reloaded.result.checkpoint).toEqual({ step: 1, position });
    expect(reloaded.result.skippedInvalid).toEqual([]);
    expect(await hostedParameters(host, r, 1)).toBe(before);
    step1 = { batch, position };
  });

  it('a repeated update returns the recorded result and changes no parameter; an update without its predecessor is PolicyStateLost', async () => {
    const r = run();
    const { acts, host } = original;
    // The reload above dropped the worker's record of step 1's update, so it cannot answer a repeat of it.
    await failsWith(acts.update(r, { step: 1 }), 'PolicyStateLost');

    const batch = await acts.sampleBatch(r, { cursor: step1.position.cursor, subsetVersion: 1 });
    await acts.rollout(r, { step: 2, exampleIds: batch.exampleIds });
    await acts.scoreReference(r, { step: 2 });
    await acts.computeRewards(r, { step: 2 });
    const parametersBefore = await hostedParameters(host, r, 1);
    const first = await acts.update(r, { step: 2 });
    expect(first.applied).toBe(true);
    const parametersAfter = await hostedParameters(host, r, 2);
    expect(parametersAfter).not.toBe(parametersBefore);
    const optimizerAfter = sha(await (await host.require(versionOf(r, 2))).engine.exportOptimizer());
    const stored = await snapshot(r.runId);

    const again = await acts.update(r, { step: 2 });
    expect(again).toEqual(first);
    expect(await hostedParameters(host, r, 2)).toBe(parametersAfter);
    expect(sha(await (await host.require(versionOf(r, 2))).engine.exportOptimizer())).toBe(optimizerAfter);
    expect(await snapshot(r.runId)).toEqual(stored);

    // Step 4 needs step 3's state; this worker holds step 2.
    const lost = await failsWith(acts.update(r, { step: 4 }), 'PolicyStateLost');
    expect(lost.message).toMatch(/expected run idem, config \w+, step 3; holds run idem, config \w+, step 2/);
    expect(await hostedParameters(host, r, 2)).toBe(parametersAfter);
  });

  it('a restarted worker answers PolicyStateLost until it loads the checkpoint, then replays the next step bit for bit', async () => {
    const r = run();
    // Step 2 on the original worker (done above) is the reference the replay must match.
    const original2 = {
      rollout: await store.get(runKeys.rollout(r.runId, 2)),
      scores: await store.get(runKeys.scores(r.runId, 2)),
      rewards: await store.get(runKeys.rewards(r.runId, 2)),
      update: withoutTiming(JSON.parse(new TextDecoder().decode(await store.get(runKeys.update(r.runId, 2))))),
      parameters: await hostedParameters(original.host, r, 2),
    };
    const restarted = newHost();
    const { acts } = restarted;
    const batch = await acts.sampleBatch(r, { cursor: step1.position.cursor, subsetVersion: 1 });
    const stored = await snapshot(r.runId);
    await failsWith(acts.rollout(r, { step: 2, exampleIds: batch.exampleIds }), 'PolicyStateLost');
    await failsWith(acts.scoreReference(r, { step: 2 }), 'PolicyStateLost');
    await failsWith(acts.update(r, { step: 2 }), 'PolicyStateLost');
    await failsWith(acts.saveCheckpoint(r, step1.position), 'PolicyStateLost');
    await failsWith(acts.filterData(r, { step: 1, round: 0, cursor: step1.position.cursor, subsetVersion: 1 }), 'PolicyStateLost');
    await failsWith(acts.warmStart(r), 'PolicyStateLost');
    // Failing calls wrote nothing.
    expect(await snapshot(r.runId)).toEqual(stored);

    const loaded = await acts.loadPolicy(r);
    expect(loaded.checkpoint?.step).toBe(1);
    await acts.rollout(r, { step: 2, exampleIds: batch.exampleIds });
    expect(sha(await store.get(runKeys.rollout(r.runId, 2)))).toBe(sha(original2.rollout));
    await acts.scoreReference(r, { step: 2 });
    expect(sha(await store.get(runKeys.scores(r.runId, 2)))).toBe(sha(original2.scores));
    await acts.computeRewards(r, { step: 2 });
    expect(sha(await store.get(runKeys.rewards(r.runId, 2)))).toBe(sha(original2.rewards));
    const update = await acts.update(r, { step: 2 });
    expect(withoutTiming(update)).toEqual(original2.update);
    expect(await hostedParameters(restarted.host, r, 2)).toBe(original2.parameters);
  });
});

describe('bad input is reported, not retried', () => {
  it('a demonstrations file with bad lines fails the warm start naming the file and the first bad line; a good one trains', async () => {
    const good = (i: number) => JSON.stringify({ id: `d${i}`, prompt: `What is ${i} + ${i}?`, completion: `<think>${i} plus ${i}</think> ${2 * i}` });
    const badFile = join(dir, 'bad-demos.jsonl');
    await writeFile(badFile, [good(1), good(2), '{"id": "d3", "prompt": ', good(4), JSON.stringify({ id: 'd5', prompt: 'What is 5 + 5?' }), good(6)].join('\n') + '\n');
    const bad = runRef('bad-demos', { sft: { steps: 3, batchSize: 2, demonstrations: badFile } });
    const { acts, host } = newHost();
    await acts.loadPolicy(bad);
    const failure = await failsWith(acts.warmStart(bad), 'InvalidData');
    expect(failure.message).toContain(`${badFile}:3`);
    expect(failure.message).not.toContain(`${badFile}:5`);
    expect(failure.message).toMatch(/2 bad record/);
    // Nothing was trained: the worker still holds the fresh model.
    await host.require(versionOf(bad, -1));

    const goodFile = join(dir, 'good-demos.jsonl');
    await writeFile(goodFile, [1, 2, 3, 4, 5, 6].map(good).join('\n') + '\n');
    const fine = runRef('good-demos', { sft: { steps: 3, batchSize: 2, demonstrations: goodFile } });
    await acts.loadPolicy(fine);
    const fresh = await hostedParameters(host, fine, -1);
    const warm = await acts.warmStart(fine);
    expect(warm.steps).toBe(3);
    expect(warm.tokens).toBeGreaterThan(0);
    expect(Number.isFinite(warm.finalLoss)).toBe(true);
    expect(await hostedParameters(host, fine, 0)).not.toBe(fresh);
  });

  it('a rollout of an example id that is not in the training set fails as InvalidData naming the id', async () => {
    const r = runRef('unknown-example');
    const { acts } = newHost();
    await acts.loadPolicy(r);
    await acts.warmStart(r);
    const cursor = await acts.initialCursor(r);
    const { exampleIds } = await acts.sampleBatch(r, { cursor, subsetVersion: 0 });
    const failure = await failsWith(acts.rollout(r, { step: 1, exampleIds: [exampleIds[0]!, 'no-such-example'] }), 'InvalidData');
    expect(failure.message).toContain('no-such-example');
    expect(failure.message).not.toContain(exampleIds[0]!);
    expect(await store.list(runKeys.stepDir(r.runId, 1))).toEqual([]);
  });
});
