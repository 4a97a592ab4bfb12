// Updates in micro-batches: gradients accumulated over a batch's micro-batches equal the whole batch's
// gradient (to rounding in float64 and float32) for every loss and aggregation, with and without LoRA;
// the loss graph does not vary with batch length or the Dr. GRPO budget, and the session cache stays bounded.
import { afterAll, describe, expect, it } from 'vitest';
import { AGGREGATIONS } from '../dro/grpo.js';
import { uniform } from '../dro/random.js';
import { EngineInputError } from './errors.js';
import type { FloatArray, FloatDType } from './float-arrays.js';
import { parseModelConfig, type ModelConfig } from './model/config.js';
import { adapterSpecs, initAdapters, type LoraConfig } from './model/lora.js';
import { initParameters, parameterSpecs } from './model/params.js';
import { PolicyEngine } from './policy.js';
import { engineOptions, randomIds, releasedAfterAll, tinyModelConfig, trainStepOptions } from './testing/fixtures.js';
import { batchGradient, countedTokens, lossGraphOptions, microBatchPlan, TrainSessions, type TrainSequence, type TrainStepOptions } from './training.js';

const config = parseModelConfig({ vocab_size: 11, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 32 }, 'train session test config');

describe('loss graph options', () => {
  it('do not vary with batch length or the Dr. GRPO budget (a fed divisor), and SFT ignores the GRPO fields', () => {
    const grpo = trainStepOptions('grpo', { learningRate: 1e-3, maxCompletionLength: 16 });
    const sft = trainStepOptions('sft', { learningRate: 1e-3 });
    const key = (o: TrainStepOptions): string => JSON.stringify(lossGraphOptions('float32', o));
    expect(key(grpo)).toBe(key({ ...grpo, maxCompletionLength: 17 }));
    expect(key(grpo)).not.toBe(key({ ...grpo, aggregation: 'token-mean' }));
    expect(key({ ...sft, klBeta: 0.5, epsilonHigh: 0.3, aggregation: 'sequence-mean' })).toBe(key(sft));
  });
});

describe('train session cache', () => {
  const sessions = new TrainSessions(config, engineOptions(), parameterSpecs(config), 2);
  afterAll(() => sessions.release());

  it('reuses sessions by graph and evicts the least recently used beyond its capacity', async () => {
    const graph = (aggregation: (typeof AGGREGATIONS)[number]) => ({ kind: 'gradient' as const, accumulate: false, options: lossGraphOptions('float32', trainStepOptions('grpo', { aggregation })) });
    const a = await sessions.get(graph('dr-grpo'));
    const b = await sessions.get(graph('token-mean'));
    expect(await sessions.get(graph('dr-grpo'))).toBe(a);
    await sessions.get(graph('sequence-mean')); // evicts token-mean, the least recently used
    expect(sessions.size).toBe(2);
    expect(await sessions.get(graph('dr-grpo'))).toBe(a);
    expect(await sessions.get(graph('token-mean'))).not.toBe(b);
    expect(sessions.size).toBe(2);
  });
});

/** Ten sequences of 3 to 14 tokens, some truncated, with old log-probs far enough off that some ratios clip. */
function batch(key: string, vocab: number): TrainSequence[] {
  return Array.from({ length: 10 }, (_, b) => {
    const prompt = 1 + Math.floor(uniform([key, 'prompt', b]) * 4);
    const completion = 2 + Math.floor(uniform([key, 'completion', b]) * 9);
    return {
      ids: randomIds('accumulate', `${key}-${b}`, prompt + completion, vocab),
      completionStart: prompt,
      advantage: uniform([key, 'advantage', b]) * 2 - 1,
      oldLogprobs: Array.from({ length: completion }, (_, j) => -2.5 + uniform([key, 'old', b, j])),
      referencePolicyLogprobs: Array.from({ length: completion }, (_, j) => -2.5 + uniform([key, 'ref', b, j])),
      truncated: b % 4 === 1,
    };
  });
}

/** max |a − b| over every entry, relative to the largest |b|. */
function relativeDifference(a: ReadonlyMap<string, FloatArray>, b: ReadonlyMap<string, FloatArray>): number {
  let diff = 0;
  let scale = 0;
  for (const [name, x] of b) {
    const y = a.get(name)!;
    x.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(v - y[i]!));
      scale = Math.max(scale, Math.abs(v));
    });
  }
  return diff / scale;
}

describe('gradient accumulation over micro-batches', () => {
  const model = tinyModelConfig({ model_type: 'qwen2', tie_word_embeddings: true });
  const lora: LoraConfig = { rank: 2, alpha: 4, targets: ['q_proj', 'v_proj', 'down_proj'] };
  const cases = [
    { loss: 'sft' as const, aggregation: 'token-mean' as const },
    ...AGGREGATIONS.map((aggregation) => ({ loss: 'grpo' as const, aggregation })),
  ];
  for (const adapted of [false, true]) {
    for (const { loss, aggregation } of cases) {
      it(`${adapted ? 'LoRA, ' : ''}${loss}${loss === 'grpo' ? ` ${aggregation}` : ''}: the accumulated gradient is the whole batch's, to rounding in float64 and in float32`, async () => {
        const sequences = batch(`${loss}-${aggregation}-${adapted}`, model.vocab_size);
        const options = trainStepOptions(loss, { aggregation, klBeta: 0.1, epsilonLow: 0.2, epsilonHigh: 0.2, maskTruncated: true, maxCompletionLength: 12 });
        // 30 tokens: at least three micro-batches (a first, an accumulating middle and a last) of the 7 counted sequences.
        const split = { ...options, microBatchTokens: 30 };
        const whole = { ...options, microBatchTokens: 1000 };
        expect(microBatchPlan(sequences, 30, countedTokens(sequences, true)).length).toBeGreaterThanOrEqual(3);
        const base = initParameters(model, 7);
        const result: Record<FloatDType, { whole: Awaited<ReturnType<typeof batchGradient>>; split: Awaited<ReturnType<typeof batchGradient>> }> = {} as never;
        for (const dtype of ['float64', 'float32'] as const) {
          const cast = (m: ReadonlyMap<string, Float32Array>): Map<string, FloatArray> => new Map([...m].map(([k, v]) => [k, dtype === 'float64' ? Float64Array.from(v) : v]));
          const trained = adapted ? adapterSpecs(model, lora) : parameterSpecs(model);
          const params = adapted ? cast(randomAdapters(model, lora)) : cast(base);
          const frozen = adapted ? { specs: parameterSpecs(model), values: cast(base) } : undefined;
          const sessions = new TrainSessions(model, engineOptions({ optimization: dtype === 'float64' ? 'basic' : 'all' }), trained, 6, adapted ? lora : undefined);
          const m = { config: model, dtype, trained, frozen };
          result[dtype] = { whole: await batchGradient(m, sessions, params, { sequences, options: whole }), split: await batchGradient(m, sessions, params, { sequences, options: split }) };
          await sessions.release();
        }
        const { float64, float32 } = result;
        expect(float64.whole.microBatches).toBe(1);
        expect(float64.split.microBatches).toBe(microBatchPlan(sequences, 30, countedTokens(sequences, true)).length);
        const d64 = relativeDifference(float64.split.grads, float64.whole.grads);
        const d32 = relativeDifference(float32.split.grads, float32.whole.grads);
        // Float32 against the float64 gradient: the accumulated one is no further from it than rounding puts the whole batch's.
        const whole32 = relativeDifference(float32.whole.grads, float64.whole.grads);
        const split32 = relativeDifference(float32.split.grads, float64.whole.grads);
        console.log(`${adapted ? 'LoRA ' : ''}${loss} ${aggregation}: split vs whole ${d64.toExponential(2)} (float64), ${d32.toExponential(2)} (float32); vs float64: whole ${whole32.toExponential(2)}, split ${split32.toExponential(2)}`);
        expect(d64).toBeLessThan(1e-14);
        expect(Math.abs(float64.split.loss - float64.whole.loss)).toBeLessThan(1e-14 * Math.max(1, Math.abs(float64.whole.loss)));
        expect(d32).toBeLessThan(1e-6);
        expect(split32).toBeLessThan(Math.max(2 * whole32, 1e-6));
        expect(Math.abs(float32.split.loss - float64.whole.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(float64.whole.loss)));
      });
    }
  }

  it('a masked truncation is not run: it needs no log-probs, and the gradient is the same bit for bit', async () => {
    const sequences = batch('masked', model.vocab_size);
    const options = trainStepOptions('grpo', { aggregation: 'dr-grpo', maskTruncated: true, maxCompletionLength: 12, microBatchTokens: 30 });
    const stripped = sequences.map((s) => (s.truncated ? { ids: s.ids.map(() => 0), completionStart: s.completionStart, truncated: true } : s));
    expect(sequences.filter((s) => s.truncated).length).toBeGreaterThan(0);
    const specs = parameterSpecs(model);
    const sessions = new TrainSessions(model, engineOptions({ optimization: 'basic' }), specs);
    const params = new Map([...initParameters(model, 7)].map(([k, v]) => [k, Float64Array.from(v)]));
    const m = { config: model, dtype: 'float64' as const, trained: specs };
    const full = await batchGradient(m, sessions, params, { sequences, options });
    const without = await batchGradient(m, sessions, params, { sequences: stripped, options });
    expect(without.microBatches).toBe(full.microBatches);
    expect(full.microBatches).toBe(microBatchPlan(sequences, 30, countedTokens(sequences, true)).length);
    expect(microBatchPlan(sequences, 30, countedTokens(sequences, true)).flat().every((i) => !sequences[i]!.truncated)).toBe(true);
    expect(without.loss).toBe(full.loss);
    expect(relativeDifference(without.grads, full.grads)).toBe(0);
    // Unmasked, the truncated sequences count and need their log-probs.
    await expect(batchGradient(m, sessions, params, { sequences: stripped, options: { ...options, maskTruncated: false } })).rejects.toThrow('GRPO needs an advantage');
    await sessions.release();
  });

  it('the divisor is the whole batch\'s: half a batch alone has a different gradient', async () => {
    // Guards the test above: were each micro-batch normalised by itself, split and whole would differ by this much.
    const sequences = batch('halves', model.vocab_size);
    const options = trainStepOptions('grpo', { aggregation: 'token-mean', maskTruncated: true, maxCompletionLength: 12, microBatchTokens: 1000 });
    const specs = parameterSpecs(model);
    const sessions = new TrainSessions(model, engineOptions({ optimization: 'basic' }), specs);
    const params = new Map([...initParameters(model, 7)].map(([k, v]) => [k, Float64Array.from(v)]));
    const m = { config: model, dtype: 'float64' as const, trained: specs };
    const whole = await batchGradient(m, sessions, params, { sequences, options });
    const first = await batchGradient(m, sessions, params, { sequences: sequences.slice(0, 5), options });
    const second = await batchGradient(m, sessions, params, { sequences: sequences.slice(5), options });
    const summed = new Map([...first.grads].map(([k, v]) => [k, v.map((x, i) => x + second.grads.get(k)![i]!)]));
    expect(relativeDifference(summed, whole.grads)).toBeGreaterThan(1e-3);
    await sessions.release();
  });
});

function randomAdapters(model: ModelConfig, lora: LoraConfig): Map<string, Float32Array> {
  // B ≠ 0, so A's gradient is not zero and proves something.
  return new Map([...initAdapters(model, lora, 3)].map(([name, a]) => [name, Float32Array.from(a, (_, i) => 0.5 * (uniform(['adapter', name, i]) - 0.5))]));
}

describe('updates in micro-batches through the engine', () => {
  const track = releasedAfterAll();

  it('land where the whole batch lands (float64), report their micro-batches, and refuse a sequence longer than the budget', async () => {
    const model = tinyModelConfig();
    const sequences = batch('engine', model.vocab_size);
    const options = trainStepOptions('grpo', { learningRate: 1e-2, maskTruncated: true, maxCompletionLength: 12 });
    const run = async (microBatchTokens: number) => {
      const engine = track(PolicyEngine.initialise(model, 5, engineOptions({ dtype: 'float64' })));
      const results = await engine.train([0, 1, 2].map(() => ({ sequences, options: { ...options, microBatchTokens } })));
      return { results, params: engine.parameters() };
    };
    const whole = await run(1000);
    const split = await run(30);
    expect(whole.results.map((r) => r.microBatches)).toEqual([1, 1, 1]);
    expect(split.results.map((r) => r.microBatches)).toEqual([0, 1, 2].map(() => microBatchPlan(sequences, 30, countedTokens(sequences, true)).length));
    expect(relativeDifference(split.params, whole.params)).toBeLessThan(1e-12);
    split.results.forEach((r, i) => {
      expect(r.tokens).toBe(whole.results[i]!.tokens);
      expect(Math.abs(r.gradNorm - whole.results[i]!.gradNorm)).toBeLessThan(1e-12);
    });
    const engine = track(PolicyEngine.initialise(model, 5, engineOptions()));
    // A masked truncation is never run, so only the counted sequences must fit.
    const counted = countedTokens(sequences, true);
    const longest = Math.max(...sequences.filter((_, i) => counted[i]! > 0).map((s) => s.ids.length));
    const at = sequences.findIndex((s, i) => counted[i]! > 0 && s.ids.length === longest);
    await expect(engine.train([{ sequences, options: { ...options, microBatchTokens: longest - 1 } }])).rejects.toThrow(
      new EngineInputError(`microBatchTokens ${longest - 1} is less than sequence ${at}'s ${longest} tokens; a sequence is never split`),
    );
    await expect(engine.train([{ sequences, options: { ...options, microBatchTokens: 0 } }])).rejects.toThrow("microBatchTokens must be 'auto' or a positive integer, got 0");
    expect(engine.optimizerSteps).toBe(0);
  });

  it('a batch of masked truncations only has no micro-batch, a zero gradient, and still takes its optimizer step', async () => {
    const model = tinyModelConfig();
    const sequences = batch('all-masked', model.vocab_size).map((s) => ({ ids: s.ids, completionStart: s.completionStart, truncated: true }));
    const options = trainStepOptions('grpo', { learningRate: 1e-2, weightDecay: 0.1, maskTruncated: true, maxCompletionLength: 12, microBatchTokens: 30 });
    const engine = track(PolicyEngine.initialise(model, 5, engineOptions({ dtype: 'float64' })));
    const before = engine.parameters();
    const [result] = await engine.train([{ sequences, options }]);
    expect(result).toMatchObject({ loss: 0, gradNorm: 0, tokens: 0, microBatches: 0 });
    expect(engine.optimizerSteps).toBe(1);
    // Fresh moments and a zero gradient: AdamW moves nothing but the decoupled decay, p ← p (1 − lr · wd), on matrices only.
    const after = engine.parameters();
    const specs = new Map(parameterSpecs(model).map((spec) => [spec.name, spec]));
    for (const [name, p] of before) {
      const decay = specs.get(name)!.shape.length >= 2 ? 1 - 1e-2 * 0.1 : 1;
      after.get(name)!.forEach((x, i) => expect(Math.abs(x - p[i]! * decay)).toBeLessThanOrEqual(1e-15 * Math.max(1, Math.abs(p[i]!))));
    }
  });
});
