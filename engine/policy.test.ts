// The policy engine on ONNX Runtime against independent references: the slow TypeScript forward pass
// (log-probs and ranks), dro/grpo.ts (loss value), finite differences (full-model gradients), plus
// batching independence, learning on a copy task, bit-identical determinism and safetensors round trips.
import { describe, expect, it } from 'vitest';
import { grpoLoss } from '../dro/grpo.js';
import { uniform } from '../dro/random.js';
import { attentionVariants, engineOptions, randomIds as keyedIds, releasedAfterAll, tinyModelConfig, trainStep, trainStepOptions, worstGapToReference } from './testing/fixtures.js';
import { parseModelConfig } from './model/config.js';
import { initParameters, parameterSpecs } from './model/params.js';
import { buildGradientGraph, TRAIN_IO } from './model/train-graph.js';
import { OrtSession, type TensorData } from './ort.js';
import { EngineInputError } from './errors.js';
import { PolicyEngine } from './policy.js';
import { microBatchFeeds, type TrainSequence } from './training.js';


const track = releasedAfterAll();

const randomIds = (key: string, n: number, vocab: number): number[] => keyedIds('ids', key, n, vocab);

describe('scoring against the slow reference forward pass', () => {
  for (const [name, config] of attentionVariants()) {
    it(`${name}: log-probs within 1e-4, ranks equal, for a padded batch`, async () => {
      const params = initParameters(config, 11);
      // Non-trivial norm weights and biases, so those code paths matter.
      for (const spec of parameterSpecs(config)) {
        if (spec.name.endsWith('norm.weight') || spec.name.endsWith('.bias')) {
          const p = params.get(spec.name)!;
          for (let i = 0; i < p.length; i++) p[i] = (spec.name.endsWith('.bias') ? 0 : 1) + 0.5 * (uniform(['np', spec.name, i]) - 0.5);
        }
      }
      const engine = track(PolicyEngine.fromParameters(config, params, engineOptions()));
      const requests = [
        { ids: randomIds(`${name}-a`, 9, 13), targetStart: 1 },
        { ids: randomIds(`${name}-b`, 4, 13), targetStart: 2 },
        { ids: randomIds(`${name}-c`, 12, 13), targetStart: 5 },
      ];
      const results = await engine.score(requests);
      const worst = worstGapToReference(config, params, requests, results);
      console.log(`${name}: max |engine − reference| log-prob = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
    });
  }

  it("a sequence's scores agree to rounding whatever else is in the batch", async () => {
    const config = tinyModelConfig();
    const engine = track(PolicyEngine.initialise(config, 5, engineOptions()));
    const target = { ids: randomIds('alone', 7, 13), targetStart: 1 };
    const [alone] = await engine.score([target]);
    const [inBatch] = await engine.score([target, { ids: randomIds('other', 15, 13), targetStart: 1 }]);
    const diff = Math.max(...alone!.logprobs.map((lp, i) => Math.abs(lp - inBatch!.logprobs[i]!)));
    console.log(`batch independence: max difference ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-6);
    expect(inBatch!.ranks).toEqual(alone!.ranks);
  });

  it('bit-identical for the same batch composition, different in the last bits across compositions (4 layers, hidden 128)', async () => {
    // On the toy models the two compositions happen to agree exactly; on this size with 2 intra-op
    // threads they do not (measured: about 40% of tokens, by up to 4.8e-7), because ONNX Runtime splits
    // a longer padded MatMul differently over its threads. With 1 thread they agreed here too: luck of
    // the shapes, not a guarantee. Hence batch plans that are a pure function of (step, config).
    const config = parseModelConfig(
      { vocab_size: 260, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256 },
      'composition test config',
    );
    const engine = (): PolicyEngine => track(PolicyEngine.initialise(config, 5, engineOptions({ intraOpThreads: 2 })));
    const target = { ids: randomIds('composition', 40, 260), targetStart: 1 };
    const batch = [target, { ids: randomIds('composition-other', 90, 260), targetStart: 1 }];
    const e = engine();
    const [alone] = await e.score([target]);
    const [inBatch] = await e.score(batch);
    expect((await e.score(batch))[0]).toEqual(inBatch);
    expect((await engine().score(batch))[0]).toEqual(inBatch);
    expect((await engine().score([target]))[0]).toEqual(alone);
    const differing = alone!.logprobs.filter((lp, i) => lp !== inBatch!.logprobs[i]).length;
    const diff = Math.max(...alone!.logprobs.map((lp, i) => Math.abs(lp - inBatch!.logprobs[i]!)));
    console.log(`alone vs padded batch: ${differing} of ${alone!.logprobs.length} log-probs differ, by up to ${diff.toExponential(2)}`);
    expect(differing).toBeGreaterThan(0);
    expect(diff).toBeLessThanOrEqual(1e-6);
  });

  it('packed by a token budget: the same scores as one run, to rounding, in request order; a request over the budget runs alone', async () => {
    const config = tinyModelConfig();
    const engine = track(PolicyEngine.initialise(config, 5, engineOptions()));
    const requests = Array.from({ length: 9 }, (_, i) => {
      const n = 3 + ((i * 5) % 11);
      return { ids: randomIds(`packed-${i}`, n, 13), targetStart: 1 + (i % Math.min(3, n)) };
    });
    requests.push({ ids: randomIds('packed-empty', 4, 13), targetStart: 4 });
    const whole = await engine.score(requests);
    const packed = await engine.score(requests, { microBatchTokens: 20 });
    let worst = 0;
    packed.forEach((r, i) => {
      expect(r.logprobs.length).toBe(requests[i]!.ids.length - requests[i]!.targetStart);
      expect(r.ranks).toEqual(whole[i]!.ranks);
      r.logprobs.forEach((lp, j) => (worst = Math.max(worst, Math.abs(lp - whole[i]!.logprobs[j]!))));
    });
    expect(worst).toBeLessThanOrEqual(1e-6);
    // A request longer than the budget is scored alone, not refused: the same numbers.
    const tight = await engine.score(requests, { microBatchTokens: 12 });
    tight.forEach((r, i) => expect(r.ranks).toEqual(whole[i]!.ranks));
    expect(Math.max(...tight.flatMap((r, i) => r.logprobs.map((lp, j) => Math.abs(lp - whole[i]!.logprobs[j]!))))).toBeLessThanOrEqual(1e-6);
  });

  it('rejects bad token ids and target spans, naming them', async () => {
    const engine = track(PolicyEngine.initialise(tinyModelConfig(), 1, engineOptions()));
    await expect(engine.score([{ ids: [1, 99], targetStart: 1 }])).rejects.toThrow(new EngineInputError('token id 99 at sequence 0, position 1 is outside the vocabulary (0..12)'));
    await expect(engine.score([{ ids: [1, 2], targetStart: 0 }])).rejects.toThrow(new EngineInputError('score request 0: targetStart 0 must be in 1..2'));
    await expect(engine.score([])).rejects.toThrow(new EngineInputError('empty batch'));
    await expect(engine.score([{ ids: randomIds('long', 65, 13), targetStart: 1 }])).rejects.toThrow(new EngineInputError('sequence of 65 tokens exceeds max_position_embeddings 64'));
  });
});

/** A GRPO batch: prompts of different lengths, completions with made-up old/ref log-probs. */
function grpoBatch(key: string, vocab: number): TrainSequence[] {
  return [0, 1, 2].map((i) => {
    const prompt = 2 + i;
    const completion = 3 + ((i * 2) % 4);
    const ids = randomIds(`${key}-${i}`, prompt + completion, vocab);
    return {
      ids,
      completionStart: prompt,
      advantage: [1.2, -0.7, 0.4][i]!,
      oldLogprobs: Array.from({ length: completion }, (_, j) => -1.5 - uniform([key, 'old', i, j])),
      referencePolicyLogprobs: Array.from({ length: completion }, (_, j) => -1.5 - uniform([key, 'ref', i, j])),
      truncated: i === 2,
    };
  });
}

describe('training step', () => {
  for (const aggregation of ['dr-grpo', 'sequence-mean', 'token-mean'] as const) {
    it(`GRPO loss equals dro/grpo.ts (${aggregation}), in float64 and float32`, async () => {
      const config = tinyModelConfig();
      const batch = grpoBatch(`loss-${aggregation}`, 13);
      for (const dtype of ['float64', 'float32'] as const) {
        const engine = track(PolicyEngine.initialise(config, 3, engineOptions({ dtype })));
        const newLogprobs = await engine.score(batch.map((s) => ({ ids: s.ids, targetStart: s.completionStart })));
        const options = trainStepOptions('grpo', { learningRate: 1e-3, aggregation, klBeta: 0.05, epsilonHigh: 0.28, maxCompletionLength: 8 });
        const { epsilonLow, epsilonHigh, klBeta, maskTruncated, maxCompletionLength } = options;
        const expected = grpoLoss(
          batch.map((s, i) => ({ newLogprobs: newLogprobs[i]!.logprobs, oldLogprobs: s.oldLogprobs!, referencePolicyLogprobs: s.referencePolicyLogprobs!, advantage: s.advantage!, truncated: s.truncated })),
          { aggregation, klBeta, epsilonLow, epsilonHigh, maskTruncated, maxCompletionLength },
        ).loss;
        const result = await trainStep(engine, batch, options);
        expect(Math.abs(result.loss - expected) / Math.max(Math.abs(expected), 1e-12), `${dtype}: engine ${result.loss} vs reference ${expected}`).toBeLessThanOrEqual(1e-5);
        expect(result.step).toBe(1);
      }
    });
  }

  for (const loss of ['grpo', 'sft'] as const) {
    it(`${loss}: full-model gradient matches central finite differences for sampled entries of every tensor (float64)`, async () => {
      const config = tinyModelConfig({ model_type: 'qwen2' });
      const params = initParameters(config, 21);
      const batch = grpoBatch(`grad-${loss}`, 13);
      const options = { dtype: 'float64' as const, loss, epsilonLow: 0.2, epsilonHigh: 0.2, klBeta: 0.1, aggregation: 'token-mean' as const };
      const session = await OrtSession.create(buildGradientGraph(config, options).toModelBytes(), engineOptions());
      const engineFeeds = microBatchFeeds(config, 'float64', batch, trainStepOptions(loss, { ...options, maskTruncated: true }))[0]!;
      const paramFeeds = (p: Map<string, Float64Array>): Record<string, TensorData> =>
        Object.fromEntries(parameterSpecs(config).map((s) => [s.name, { dtype: 'float64' as const, dims: s.shape, data: p.get(s.name)! }]));
      const p64 = new Map([...params].map(([k, v]) => [k, Float64Array.from(v)]));
      const out = await session.run({ ...paramFeeds(p64), ...engineFeeds });
      const lossAt = async (p: Map<string, Float64Array>): Promise<number> => ((await session.run({ ...paramFeeds(p), ...engineFeeds }, [TRAIN_IO.loss])).loss!.data as Float64Array)[0]!;
      let checked = 0;
      let worst = 0;
      for (const spec of parameterSpecs(config)) {
        const grad = out[`grad.${spec.name}`]!.data as Float64Array;
        const base = p64.get(spec.name)!;
        for (let s = 0; s < 3; s++) {
          const k = Math.floor(uniform(['gradcheck', spec.name, s]) * base.length);
          const h = 1e-5;
          const orig = base[k]!;
          base[k] = orig + h;
          const plus = await lossAt(p64);
          base[k] = orig - h;
          const minus = await lossAt(p64);
          base[k] = orig;
          const numeric = (plus - minus) / (2 * h);
          const error = Math.abs(grad[k]! - numeric) / (1e-6 + Math.abs(numeric) + Math.abs(grad[k]!));
          worst = Math.max(worst, Math.abs(grad[k]! - numeric));
          expect(error < 1e-4 || Math.abs(grad[k]! - numeric) < 1e-8, `${spec.name}[${k}]: analytic ${grad[k]} numeric ${numeric}`).toBe(true);
          checked++;
        }
      }
      console.log(`${loss}: ${checked} gradient entries checked across ${parameterSpecs(config).length} tensors, max abs error ${worst.toExponential(2)}`);
      await session.release();
    });
  }

  it('SFT on a copy task drives the loss down by an order of magnitude', async () => {
    // Sequences "a b c d | a b c d" over 8 symbols: the second half is determined by the first.
    const config = parseModelConfig({ vocab_size: 10, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32 }, 'copy task');
    const engine = track(PolicyEngine.initialise(config, 7, engineOptions()));
    const batchAt = (step: number): TrainSequence[] =>
      Array.from({ length: 8 }, (_, b) => {
        const source = Array.from({ length: 4 }, (_, i) => 1 + Math.floor(uniform(['copy', step, b, i]) * 8));
        return { ids: [...source, 9, ...source], completionStart: 5 };
      });
    const first = (await trainStep(engine, batchAt(0), trainStepOptions('sft', { learningRate: 3e-3 }))).loss;
    let last = first;
    for (let step = 1; step < 300; step++) last = (await trainStep(engine, batchAt(step), trainStepOptions('sft', { learningRate: 3e-3 }))).loss;
    console.log(`copy task SFT: loss ${first.toFixed(4)} → ${last.toFixed(4)} after 300 steps`);
    expect(last).toBeLessThan(first / 10);
  });

  it('two fresh engines with the same seed and data are bit-identical after 20 steps', async () => {
    const config = tinyModelConfig();
    const run = async (): Promise<Uint8Array> => {
      const engine = track(PolicyEngine.initialise(config, 99, engineOptions({ intraOpThreads: 2 })));
      for (let step = 0; step < 20; step++) await trainStep(engine, grpoBatch(`det-${step}`, 13), trainStepOptions('grpo', { learningRate: 1e-3, weightDecay: 0.01 }));
      return engine.exportParameters();
    };
    const [a, b] = [await run(), await run()];
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(PolicyEngine.initialise(config, 99, engineOptions()).exportParameters()))).toBe(false);
  });

  it('parameters and optimizer state round-trip through safetensors, and training resumes identically', async () => {
    const config = tinyModelConfig();
    const a = track(PolicyEngine.initialise(config, 4, engineOptions()));
    for (let step = 0; step < 3; step++) await trainStep(a, grpoBatch(`rt-${step}`, 13), trainStepOptions('grpo', { learningRate: 1e-3 }));
    const b = track(PolicyEngine.initialise(config, 123, engineOptions()));
    b.loadState({ parameters: a.exportParameters(), optimizer: a.exportOptimizer(), reference: null, tag: { runId: 'rt', configHash: 'c', step: 3 } });
    expect(b.optimizerSteps).toBe(3);
    await trainStep(a, grpoBatch('rt-next', 13), trainStepOptions('grpo', { learningRate: 1e-3 }));
    await trainStep(b, grpoBatch('rt-next', 13), trainStepOptions('grpo', { learningRate: 1e-3 }));
    expect(Buffer.from(a.exportParameters()).equals(Buffer.from(b.exportParameters()))).toBe(true);
    expect(Buffer.from(a.exportOptimizer()).equals(Buffer.from(b.exportOptimizer()))).toBe(true);
    expect(() => track(PolicyEngine.initialise(tinyModelConfig({ hidden_size: 32 }), 1, engineOptions())).loadState({ parameters: a.exportParameters(), optimizer: null, reference: null, tag: { runId: 'rt', configHash: 'c', step: 3 } })).toThrow(
      'model.safetensors: tensor model.embed_tokens.weight has shape [13, 16], the model needs [13, 32]',
    );
  });
});

/** Feeds of the gradient graph for a batch (what the engine builds internally, spelled out for the check). */
