// The engine's state contract for the Temporal activities: tags, whole-state loads that land entirely
// or not at all, the frozen reference policy, optimizer reset, and training that commits every update
// or none (tag mismatch, cancellation, non-finite loss), checked bit for bit on the exported files.
import { describe, expect, it } from 'vitest';
import { uniform } from '../dro/random.js';
import { EngineAbortError, EngineInputError, NonFiniteUpdateError, PolicyTagMismatchError, type PolicyTag } from './errors.js';
import { PolicyEngine } from './policy.js';
import type { TrainSequence } from './training.js';
import { engineOptions, releasedAfterAll, tinyModelConfig, trainStep, trainStepOptions } from './testing/fixtures.js';
import { decodeSafetensors, encodeSafetensors } from './weights/safetensors.js';

const config = tinyModelConfig();
const track = releasedAfterAll();
const engine = (seed = 1): PolicyEngine => track(PolicyEngine.initialise(config, seed, engineOptions()));

const ids = (key: string, n: number): number[] => Array.from({ length: n }, (_, i) => Math.floor(uniform(['state', key, i]) * 13));
function grpoBatch(key: string): TrainSequence[] {
  return [0, 1, 2].map((i) => {
    const n = 3 + i;
    return {
      ids: ids(`${key}-${i}`, 2 + n),
      completionStart: 2,
      advantage: [0.9, -0.4, 0.3][i]!,
      oldLogprobs: Array.from({ length: n }, (_, j) => -2 - uniform([key, 'old', i, j])),
      referencePolicyLogprobs: Array.from({ length: n }, (_, j) => -2 - uniform([key, 'ref', i, j])),
    };
  });
}
const grpo = trainStepOptions('grpo', { learningRate: 1e-2, klBeta: 0.05, maxCompletionLength: 8 });
const sft = trainStepOptions('sft', { learningRate: 1e-2 });
const tag = (step: number): PolicyTag => ({ runId: 'run-1', configHash: 'c0ffee', step });
const probe = [{ ids: ids('probe', 9), targetStart: 1 }];

/** Optimizer bytes with every moment but no step count: a load must not apply the moments either. */
function withoutStep(optimizer: Uint8Array): Uint8Array {
  const file = decodeSafetensors(optimizer);
  file.tensors.delete('optimizer.step');
  return encodeSafetensors(file.tensors);
}

/** Everything the engine holds, as bytes and JSON, for bit-for-bit comparisons. */
function snapshot(e: PolicyEngine): { parameters: Buffer; optimizer: Buffer; reference: Buffer; tag: PolicyTag | undefined; optimizerSteps: number } {
  return { parameters: Buffer.from(e.exportParameters()), optimizer: Buffer.from(e.exportOptimizer()), reference: Buffer.from(e.exportReferencePolicy()), tag: e.tag(), optimizerSteps: e.optimizerSteps };
}

/** An engine that has trained, frozen a reference in the middle and carries a tag. */
async function trained(seed = 2): Promise<PolicyEngine> {
  const e = engine(seed);
  await trainStep(e, grpoBatch('a'), grpo);
  e.freezeReferencePolicy();
  await trainStep(e, grpoBatch('b'), grpo);
  e.setTag(tag(2));
  return e;
}

describe('tags', () => {
  it('start unset, are copied in and out, and are validated', () => {
    const e = engine();
    expect(e.tag()).toBeUndefined();
    const t = tag(3);
    e.setTag(t);
    t.step = 99;
    expect(e.tag()).toEqual(tag(3));
    e.tag()!.step = 42;
    expect(e.tag()).toEqual(tag(3));
    expect(() => e.setTag({ runId: '', configHash: 'x', step: 0 })).toThrow(EngineInputError);
    expect(() => e.setTag({ runId: 'r', configHash: 'x', step: 0.5 })).toThrow('tag: step must be an integer, got 0.5');
    expect(e.tag()).toEqual(tag(3));
    e.setTag(undefined);
    expect(e.tag()).toBeUndefined();
  });
});

describe('loadState', () => {
  it('replaces parameters, optimizer, reference and tag together: the copy trains on identically', async () => {
    const a = await trained();
    const b = engine(7);
    const before = snapshot(a);
    b.loadState({ parameters: a.exportParameters(), optimizer: a.exportOptimizer(), reference: a.exportReferencePolicy(), tag: tag(2) });
    expect(snapshot(b)).toEqual(before);
    expect(await b.score(probe, { policy: 'reference' })).toEqual(await a.score(probe, { policy: 'reference' }));
    const [ra, rb] = [await trainStep(a, grpoBatch('c'), grpo), await trainStep(b, grpoBatch('c'), grpo)];
    expect(rb).toEqual(ra);
    expect(snapshot(b)).toEqual(snapshot(a));
  });

  it('null optimizer: zero moments and step 0; null reference: the loaded parameters', async () => {
    const a = await trained();
    const b = engine(7);
    b.loadState({ parameters: a.exportParameters(), optimizer: null, reference: null, tag: tag(5) });
    expect(b.optimizerSteps).toBe(0);
    expect(Buffer.from(b.exportOptimizer())).toEqual(Buffer.from(engine(3).exportOptimizer()));
    expect(Buffer.from(b.exportReferencePolicy())).toEqual(Buffer.from(a.exportParameters()));
    expect(b.tag()).toEqual(tag(5));
  });

  it('a bad file anywhere leaves the engine exactly as it was, bit for bit, tag included', async () => {
    const e = await trained();
    const before = snapshot(e);
    const paramsMap = e.parameters();
    const scores = await e.score(probe);
    const good = await trained(5);
    const wrongShape = track(PolicyEngine.initialise(tinyModelConfig({ hidden_size: 32 }, 'other'), 1, engineOptions()));
    const truncated = good.exportOptimizer().subarray(0, 100);
    const cases: [string, Parameters<PolicyEngine['loadState']>[0], string][] = [
      ['corrupt optimizer', { parameters: good.exportParameters(), optimizer: truncated, reference: null, tag: tag(9) }, 'optimizer.safetensors'],
      ['optimizer of another shape', { parameters: good.exportParameters(), optimizer: wrongShape.exportOptimizer(), reference: null, tag: tag(9) }, 'optimizer.safetensors: tensor optimizer.adam_m.model.embed_tokens.weight has shape [13, 32], the model needs [13, 16]'],
      ['parameters as optimizer', { parameters: good.exportParameters(), optimizer: good.exportParameters(), reference: null, tag: tag(9) }, 'optimizer.safetensors: tensor optimizer.adam_m.model.embed_tokens.weight is missing'],
      ['bad reference', { parameters: good.exportParameters(), optimizer: good.exportOptimizer(), reference: wrongShape.exportParameters(), tag: tag(9) }, 'reference.safetensors'],
      ['optimizer without its step', { parameters: good.exportParameters(), optimizer: withoutStep(good.exportOptimizer()), reference: null, tag: tag(9) }, 'optimizer.safetensors: optimizer.step (I64 scalar) is missing'],
      ['bad tag', { parameters: good.exportParameters(), optimizer: good.exportOptimizer(), reference: null, tag: { runId: 'r', configHash: '', step: 1 } }, 'configHash must be a non-empty string'],
    ];
    for (const [name, files, message] of cases) {
      let thrown: unknown;
      try {
        e.loadState(files);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, name).toBeInstanceOf(EngineInputError);
      expect((thrown as Error).message, name).toContain(message);
      expect(snapshot(e), name).toEqual(before);
      // The same map object: sessions with baked-in weights do not even count as stale.
      expect(e.parameters(), name).toBe(paramsMap);
    }
    expect(await e.score(probe)).toEqual(scores);
  });

});

describe('reference policy', () => {
  it('is the initial parameters until frozen, then stays put while training moves the current policy', async () => {
    const e = engine(4);
    const initial = Buffer.from(e.exportParameters());
    const initialScores = await e.score(probe);
    await trainStep(e, grpoBatch('r1'), grpo);
    expect(Buffer.from(e.exportReferencePolicy())).toEqual(initial);
    expect(await e.score(probe, { policy: 'reference' })).toEqual(initialScores);
    e.freezeReferencePolicy();
    const frozen = Buffer.from(e.exportParameters());
    const frozenScores = await e.score(probe);
    for (let i = 0; i < 3; i++) await trainStep(e, grpoBatch(`r2-${i}`), grpo);
    expect(await e.score(probe)).not.toEqual(frozenScores);
    expect(await e.score(probe, { policy: 'reference' })).toEqual(frozenScores);
    expect(Buffer.from(e.exportReferencePolicy())).toEqual(frozen);
    await expect(e.score(probe, { policy: 'old' as 'current' })).rejects.toThrow(EngineInputError);
  });
});

describe('resetOptimizer', () => {
  it('zeroes the moments and the step, and leaves parameters, reference and tag alone', async () => {
    const e = await trained();
    const before = snapshot(e);
    e.resetOptimizer();
    expect(snapshot(e)).toEqual({ ...before, optimizer: Buffer.from(engine(9).exportOptimizer()), optimizerSteps: 0 });
    const fresh = engine(9);
    fresh.loadState({ parameters: e.exportParameters(), optimizer: null, reference: e.exportReferencePolicy(), tag: tag(2) });
    expect(await trainStep(e, grpoBatch('after-reset'), grpo)).toEqual(await trainStep(fresh, grpoBatch('after-reset'), grpo));
  });
});

describe('train: every update or none', () => {
  it('commits all updates and the next tag; equals the same updates one by one', async () => {
    const a = await trained();
    const b = await trained();
    const steps = ['s1', 's2', 's3'].map((k) => ({ sequences: grpoBatch(k), options: grpo }));
    const progress: number[] = [];
    const results = await a.train(steps, { expect: tag(2), next: tag(3), onProgress: (n) => progress.push(n) });
    expect(results.map((r) => r.step)).toEqual([3, 4, 5]);
    expect(progress).toEqual([1, 2, 3]);
    const oneByOne = [];
    for (const s of steps) oneByOne.push(await trainStep(b, s.sequences, s.options));
    expect(results).toEqual(oneByOne);
    expect(a.tag()).toEqual(tag(3));
    expect(b.tag()).toEqual(tag(2));
    expect({ ...snapshot(a), tag: undefined }).toEqual({ ...snapshot(b), tag: undefined });
  });

  it('zero updates still move the tag (a step with nothing to train)', async () => {
    const e = await trained();
    const before = snapshot(e);
    expect(await e.train([], { expect: tag(2), next: tag(3) })).toEqual([]);
    expect(snapshot(e)).toEqual({ ...before, tag: tag(3) });
  });

  it('a tag mismatch names both tags and changes nothing', async () => {
    const e = await trained();
    const before = snapshot(e);
    const run = e.train([{ sequences: grpoBatch('x'), options: grpo }], { expect: tag(7), next: tag(8) });
    await expect(run).rejects.toThrow(PolicyTagMismatchError);
    await expect(run).rejects.toThrow('the engine holds policy (run "run-1", config c0ffee, step 2), the caller expects policy (run "run-1", config c0ffee, step 7)');
    const untagged = engine();
    await expect(trainStep(untagged, grpoBatch('x'), grpo, { expect: tag(0) })).rejects.toThrow('the engine holds an untagged policy');
    expect(snapshot(e)).toEqual(before);
  });

  it('an abort at any check (before, between and after the session runs) changes nothing', async () => {
    const e = await trained();
    const before = snapshot(e);
    const paramsMap = e.parameters();
    const steps = ['c1', 'c2'].map((k) => ({ sequences: grpoBatch(k), options: grpo }));
    // Two updates: checks before and after each session run, then one before committing.
    const checks = 5;
    for (let abortAt = 1; abortAt <= checks; abortAt++) {
      let reads = 0;
      const signal = {
        get aborted() {
          return ++reads >= abortAt;
        },
        reason: new Error(`stopped at check ${abortAt}`),
      } as AbortSignal;
      const run = e.train(steps, { signal, expect: tag(2), next: tag(3) });
      await expect(run).rejects.toThrow(EngineAbortError);
      await expect(run).rejects.toThrow(`stopped at check ${abortAt}`);
      expect(reads, `abort at check ${abortAt}`).toBe(abortAt);
      expect(snapshot(e)).toEqual(before);
      expect(e.parameters()).toBe(paramsMap);
    }
    // The one-step wrapper too (it used to apply the update regardless).
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await expect(trainStep(e, grpoBatch('c3'), grpo, { signal: controller.signal })).rejects.toThrow(EngineAbortError);
    expect(snapshot(e)).toEqual(before);
  });

  it('a non-finite loss (NaN advantage or old log-prob) names the update and changes nothing, even after good updates', async () => {
    const e = await trained();
    const before = snapshot(e);
    const paramsMap = e.parameters();
    const nanAdvantage = grpoBatch('n1').map((s, i) => (i === 1 ? { ...s, advantage: Number.NaN } : s));
    await expect(trainStep(e, nanAdvantage, grpo)).rejects.toThrow(new NonFiniteUpdateError(3, 'loss', Number.NaN));
    await expect(trainStep(e, nanAdvantage, grpo)).rejects.toThrow('update 3: loss is NaN; the weights were left unchanged');

    const nanOld = grpoBatch('n2').map((s, i) => (i === 0 ? { ...s, oldLogprobs: s.oldLogprobs!.map((lp, j) => (j === 1 ? Number.NaN : lp)) } : s));
    const run = e.train(
      [
        { sequences: grpoBatch('ok'), options: grpo },
        { sequences: nanOld, options: grpo },
      ],
      { expect: tag(2), next: tag(3) },
    );
    await expect(run).rejects.toThrow('update 4: loss is NaN; the weights were left unchanged');
    const err = (await run.catch((x: unknown) => x)) as NonFiniteUpdateError;
    expect([err.update, err.quantity]).toEqual([4, 'loss']);
    expect(snapshot(e)).toEqual(before);
    expect(e.parameters()).toBe(paramsMap);
  });

  it('checks every batch before the first update runs', async () => {
    const e = await trained();
    const before = snapshot(e);
    const steps = [
      { sequences: grpoBatch('v1'), options: grpo },
      { sequences: [{ ids: [1, 2, 40], completionStart: 1 }], options: sft },
    ];
    await expect(e.train(steps)).rejects.toThrow(new EngineInputError('train step 1: token id 40 at sequence 0, position 2 is outside the vocabulary (0..12)'));
    await expect(trainStep(e, [{ ids: [1, 2], completionStart: 0 }], sft)).rejects.toThrow('sequence 0: completionStart 0 must be in 1..2');
    await expect(trainStep(e, grpoBatch('v2'), { ...grpo, maxCompletionLength: 2 })).rejects.toThrow('maxCompletionLength 2 must be an integer of at least the longest completion (5 tokens)');
    await expect(trainStep(e, [{ ids: [1, 2, 3], completionStart: 1 }], grpo)).rejects.toThrow('sequence 0: GRPO needs an advantage and 2 old and reference-policy log-probs (one per completion token)');
    await expect(trainStep(e, grpoBatch('v3'), { ...grpo, learningRate: Number.NaN })).rejects.toThrow('learningRate must be a finite number ≥ 0, got NaN');
    // The engine has no defaults: a missing option is named.
    await expect(trainStep(e, grpoBatch('v4'), { ...grpo, beta2: undefined } as never)).rejects.toThrow('beta2 must be a finite number, got undefined');
    await expect(trainStep(e, grpoBatch('v5'), { ...grpo, aggregation: undefined } as never)).rejects.toThrow('aggregation must be one of dr-grpo, sequence-mean, token-mean, got undefined');
    await expect(trainStep(e, grpoBatch('v6'), { ...grpo, maskTruncated: undefined } as never)).rejects.toThrow('maskTruncated must be a boolean, got undefined');
    expect(snapshot(e)).toEqual(before);
  });
});
