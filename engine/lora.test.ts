// LoRA in the engine against independent references: adapter gradients against central finite
// differences (float64), the adapted engine's scores against the slow TypeScript forward pass of the
// merged weights, the merged model against base + adapters, B = 0 giving exactly the base, training
// that leaves the base bytes alone, PEFT's file layout, and a state round trip that resumes bit for bit.
import { describe, expect, it } from 'vitest';
import { uniform } from '../dro/random.js';
import { engineOptions, randomIds as keyedIds, releasedAfterAll, samplingOptions, tinyModelConfig, trainStep, trainStepOptions } from './testing/fixtures.js';
import { referenceLogprobsAndRanks } from '../test/reference/llama-forward.js';
import { EngineInputError } from './errors.js';
import type { ModelConfig } from './model/config.js';
import { adapterConfigJson, adapterSpecs, initAdapters, mergeAdapters, parseAdapterConfig, type LoraConfig } from './model/lora.js';
import { initParameters, parameterSpecs } from './model/params.js';
import { buildGradientGraph, TRAIN_IO } from './model/train-graph.js';
import { OrtSession, type TensorData } from './ort.js';
import { PolicyEngine } from './policy.js';
import { microBatchFeeds, type TrainSequence } from './training.js';
import { decodeSafetensors, encodeSafetensors, tensorFrom, toFloat32 } from './weights/safetensors.js';


const ALL: LoraConfig = { rank: 2, alpha: 6, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const ATTENTION: LoraConfig = { rank: 4, alpha: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };

const track = releasedAfterAll();

const randomIds = (key: string, n: number, vocab: number): number[] => keyedIds('lora-ids', key, n, vocab);

function grpoBatch(key: string, vocab: number): TrainSequence[] {
  return [0, 1, 2].map((i) => {
    const prompt = 2 + i;
    const completion = 3 + ((i * 2) % 4);
    return {
      ids: randomIds(`${key}-${i}`, prompt + completion, vocab),
      completionStart: prompt,
      advantage: [1.2, -0.7, 0.4][i]!,
      oldLogprobs: Array.from({ length: completion }, (_, j) => -1.5 - uniform([key, 'old', i, j])),
      referencePolicyLogprobs: Array.from({ length: completion }, (_, j) => -1.5 - uniform([key, 'ref', i, j])),
      truncated: i === 2,
    };
  });
}

const requestsOf = (batch: TrainSequence[]) => batch.map((s) => ({ ids: s.ids, targetStart: s.completionStart }));

/** Adapters with B ≠ 0 too (at PEFT's init B = 0, so A's gradient would be exactly zero and prove nothing). */
function randomAdapters(config: ModelConfig, lora: LoraConfig, key: string): Map<string, Float64Array> {
  return new Map(adapterSpecs(config, lora).map((s) => [s.name, Float64Array.from({ length: s.shape[0]! * s.shape[1]! }, (_, i) => 0.6 * (uniform(['lora-adapter', key, s.name, i]) - 0.5))]));
}

describe('LoRA gradients', () => {
  for (const loss of ['grpo', 'sft'] as const) {
    it(`${loss}: every adapter gradient entry matches central finite differences (float64, every projection adapted, QKV bias)`, async () => {
      const config = tinyModelConfig({ model_type: 'qwen2' });
      const base = new Map([...initParameters(config, 21)].map(([k, v]) => [k, Float64Array.from(v)]));
      const adapters = randomAdapters(config, ALL, loss);
      const batch = grpoBatch(`grad-${loss}`, 13);
      const options = { dtype: 'float64' as const, loss, epsilonLow: 0.2, epsilonHigh: 0.2, klBeta: 0.1, aggregation: 'token-mean' as const };
      const session = await OrtSession.create(buildGradientGraph(config, options, ALL).toModelBytes(), engineOptions({ optimization: 'basic' }));
      const batchFeeds = microBatchFeeds(config, 'float64', batch, trainStepOptions(loss, { ...options, maskTruncated: true }))[0]!;
      const baseFeeds = Object.fromEntries(parameterSpecs(config).map((s) => [s.name, { dtype: 'float64' as const, dims: s.shape, data: base.get(s.name)! }]));
      const adapterFeeds = (a: Map<string, Float64Array>): Record<string, TensorData> => Object.fromEntries(adapterSpecs(config, ALL).map((s) => [s.name, { dtype: 'float64' as const, dims: s.shape, data: a.get(s.name)! }]));
      const out = await session.run({ ...baseFeeds, ...adapterFeeds(adapters), ...batchFeeds });
      // Only adapter gradients exist: the base is frozen.
      expect(Object.keys(out).filter((k) => k.startsWith('grad.')).sort()).toEqual(adapterSpecs(config, ALL).map((s) => `grad.${s.name}`).sort());
      const lossAt = async (): Promise<number> => ((await session.run({ ...baseFeeds, ...adapterFeeds(adapters), ...batchFeeds }, [TRAIN_IO.loss])).loss!.data as Float64Array)[0]!;
      let checked = 0;
      let worst = 0;
      const h = 1e-5;
      for (const spec of adapterSpecs(config, ALL)) {
        const grad = out[`grad.${spec.name}`]!.data as Float64Array;
        const values = adapters.get(spec.name)!;
        for (let k = 0; k < values.length; k++) {
          const orig = values[k]!;
          values[k] = orig + h;
          const plus = await lossAt();
          values[k] = orig - h;
          const minus = await lossAt();
          values[k] = orig;
          const numeric = (plus - minus) / (2 * h);
          const error = Math.abs(grad[k]! - numeric);
          worst = Math.max(worst, error);
          expect(error <= 1e-4 * (Math.abs(numeric) + Math.abs(grad[k]!)) || error < 1e-8, `${spec.name}[${k}]: analytic ${grad[k]} numeric ${numeric}`).toBe(true);
          checked++;
        }
      }
      expect(checked).toBe(adapterSpecs(config, ALL).reduce((a, s) => a + s.shape[0]! * s.shape[1]!, 0));
      console.log(`LoRA ${loss}: ${checked} adapter gradient entries checked, max abs error ${worst.toExponential(2)}`);
      await session.release();
    });
  }
});

/** The train graph's batch feeds in float64 (ids, masks, GRPO inputs). */

const maxDiff = (a: number[][], b: number[][]): number => Math.max(...a.flatMap((row, i) => row.map((x, j) => Math.abs(x - b[i]![j]!))));
const logprobsOf = async (e: PolicyEngine, batch: TrainSequence[], policy: 'current' | 'reference' = 'current'): Promise<number[][]> => (await e.score(requestsOf(batch), { policy })).map((r) => r.logprobs);

/** A few GRPO steps with a large learning rate, so B moves well away from 0. */
async function trainSome(e: PolicyEngine, steps: number): Promise<void> {
  for (let step = 0; step < steps; step++) {
    const batch = grpoBatch(`train-${step}`, 13);
    const old = await logprobsOf(e, batch);
    const sequences = batch.map((s, i) => ({ ...s, oldLogprobs: old[i]!, referencePolicyLogprobs: old[i]! }));
    await trainStep(e, sequences, trainStepOptions('grpo', { learningRate: 3e-2, maxCompletionLength: 8, klBeta: 0.01 }));
  }
}

describe('a LoRA engine', () => {
  it('starts exactly at the base: B = 0 gives the base model bit for bit, in scores, the reference policy and greedy generation', async () => {
    const config = tinyModelConfig();
    const params = initParameters(config, 5);
    const base = track(PolicyEngine.fromParameters(config, params, engineOptions()));
    const adapted = track(PolicyEngine.fromParameters(config, params, engineOptions({ lora: { ...ALL, seed: 9 } })));
    const batch = grpoBatch('start', 13);
    const expected = await logprobsOf(base, batch);
    expect(await logprobsOf(adapted, batch)).toEqual(expected);
    expect(await logprobsOf(adapted, batch, 'reference')).toEqual(expected);
    const prompts = [0, 1].map((i) => ({ promptIds: randomIds(`prompt-${i}`, 3 + i, 13), key: { seed: 1, step: 0, exampleId: `p${i}`, sampleIndex: 0 } }));
    expect(await adapted.generate(prompts, samplingOptions({ temperature: 0, maxNewTokens: 6 }))).toEqual(await base.generate(prompts, samplingOptions({ temperature: 0, maxNewTokens: 6 })));
    // A is PEFT's kaiming-uniform draw, keyed by the seed: within ±1/√in, not zero, and the same for the same seed.
    const a = adapted.parameters().get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')!;
    const bound = 1 / Math.sqrt(config.intermediate_size);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(bound / 2);
    expect([...adapted.parameters().get('base_model.model.model.layers.0.mlp.down_proj.lora_B.weight')!].every((x) => x === 0)).toBe(true);
    expect(initAdapters(config, ALL, 9)).toEqual(initAdapters(config, ALL, 9));
    expect(initAdapters(config, ALL, 10).get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')).not.toEqual(a);
  });

  it('changes only the adapters in a training step: the base bytes stay, B leaves 0, the reference stays the base', async () => {
    const config = tinyModelConfig();
    const params = initParameters(config, 6);
    const e = track(PolicyEngine.fromParameters(config, params, engineOptions({ lora: { ...ATTENTION, seed: 2 } })));
    const baseBytes = Buffer.from(e.exportBaseParameters());
    const adaptersBefore = Buffer.from(e.exportParameters());
    const reference = await logprobsOf(e, grpoBatch('ref', 13), 'reference');
    await trainSome(e, 3);
    expect(Buffer.compare(Buffer.from(e.exportBaseParameters()), baseBytes)).toBe(0);
    expect(Buffer.compare(Buffer.from(e.exportBaseParameters()), Buffer.from(track(PolicyEngine.fromParameters(config, params, engineOptions())).exportParameters()))).toBe(0);
    expect(Buffer.compare(Buffer.from(e.exportParameters()), adaptersBefore)).not.toBe(0);
    for (const spec of adapterSpecs(config, ATTENTION)) {
      const before = toFloat32(decodeSafetensors(adaptersBefore).tensors.get(spec.name)!);
      expect(e.parameters().get(spec.name), `${spec.name} trained`).not.toEqual(before);
    }
    // The optimizer holds moments of the adapters only.
    const moments = [...decodeSafetensors(e.exportOptimizer()).tensors.keys()].filter((k) => k !== 'optimizer.step');
    expect(moments.sort()).toEqual(adapterSpecs(config, ATTENTION).flatMap((s) => [`optimizer.adam_m.${s.name}`, `optimizer.adam_v.${s.name}`]).sort());
    expect(await logprobsOf(e, grpoBatch('ref', 13), 'reference')).toEqual(reference);
    expect(maxDiff(await logprobsOf(e, grpoBatch('ref', 13)), reference)).toBeGreaterThan(1e-3);
  });

  it('scores like the slow reference forward pass of the merged weights, and a merged model scores within 1e-4 of base + adapters', async () => {
    for (const [name, config, lora] of [
      ['attention targets', tinyModelConfig(), ATTENTION],
      ['every projection, QKV bias, tied embeddings', tinyModelConfig({ model_type: 'qwen2', tie_word_embeddings: true }), ALL],
    ] as const) {
      const params = initParameters(config, 7);
      const e = track(PolicyEngine.fromParameters(config, params, engineOptions({ lora: { ...lora, seed: 3 } })));
      await trainSome(e, 4);
      const merged = mergeAdapters(config, lora, params, e.parameters() as ReadonlyMap<string, Float32Array>);
      const mergedEngine = track(PolicyEngine.fromParameters(config, merged, engineOptions()));
      const batch = [...grpoBatch('merged-a', 13), ...grpoBatch('merged-b', 13)];
      const adapted = await logprobsOf(e, batch);
      const fromMerged = await logprobsOf(mergedEngine, batch);
      const slow = batch.map((s) => referenceLogprobsAndRanks(config, merged, s.ids, s.completionStart).logprobs);
      const baseline = await logprobsOf(track(PolicyEngine.fromParameters(config, params, engineOptions())), batch);
      const mergedVsAdapted = maxDiff(fromMerged, adapted);
      const slowVsAdapted = maxDiff(slow, adapted);
      console.log(`${name}: merged vs base + adapters max |Δ log-prob| ${mergedVsAdapted.toExponential(2)}; slow reference vs adapted ${slowVsAdapted.toExponential(2)}; adapted vs base ${maxDiff(adapted, baseline).toExponential(2)}`);
      expect(maxDiff(adapted, baseline), 'training moved the model').toBeGreaterThan(1e-2);
      expect(mergedVsAdapted).toBeLessThanOrEqual(1e-4);
      expect(slowVsAdapted).toBeLessThanOrEqual(1e-4);
      // Generation samples from the merged weights: the same tokens as the merged model's own engine.
      const prompts = [0, 1, 2].map((i) => ({ promptIds: randomIds(`gen-${i}`, 2 + i, 13), key: { seed: 4, step: 1, exampleId: `g${i}`, sampleIndex: i } }));
      expect(await e.generate(prompts, samplingOptions({ temperature: 1, maxNewTokens: 8 }))).toEqual(await mergedEngine.generate(prompts, samplingOptions({ temperature: 1, maxNewTokens: 8 })));
    }
  });

  it('trains in float64 too', async () => {
    const config = tinyModelConfig();
    const e = track(PolicyEngine.fromParameters(config, initParameters(config, 8), engineOptions({ dtype: 'float64', lora: { ...ATTENTION, seed: 1 } })));
    await trainSome(e, 2);
    expect(e.parameters().get(adapterSpecs(config, ATTENTION)[1]!.name)).toBeInstanceOf(Float64Array);
    expect(e.optimizerSteps).toBe(2);
  });

  it('writes adapters in PEFT layout: names, shapes, adapter_config.json', () => {
    const config = tinyModelConfig({ num_key_value_heads: 1 });
    const lora: LoraConfig = { rank: 3, alpha: 12, targets: ['v_proj', 'down_proj', 'q_proj', 'gate_proj'] };
    const e = track(PolicyEngine.initialise(config, 1, engineOptions({ lora: { ...lora, seed: 1 } })));
    const file = decodeSafetensors(e.exportParameters());
    const shapes = Object.fromEntries([...file.tensors].map(([name, t]) => [name, t.shape]));
    const expected: Record<string, number[]> = {};
    for (let l = 0; l < 2; l++) {
      const p = `base_model.model.model.layers.${l}`;
      Object.assign(expected, {
        [`${p}.self_attn.q_proj.lora_A.weight`]: [3, 16],
        [`${p}.self_attn.q_proj.lora_B.weight`]: [16, 3],
        [`${p}.self_attn.v_proj.lora_A.weight`]: [3, 16],
        [`${p}.self_attn.v_proj.lora_B.weight`]: [4, 3], // one KV head of 4
        [`${p}.mlp.gate_proj.lora_A.weight`]: [3, 16],
        [`${p}.mlp.gate_proj.lora_B.weight`]: [24, 3],
        [`${p}.mlp.down_proj.lora_A.weight`]: [3, 24],
        [`${p}.mlp.down_proj.lora_B.weight`]: [16, 3],
      });
    }
    expect(shapes).toEqual(expected);
    expect(new Set([...file.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F32']));
    expect(file.metadata).toEqual({ format: 'pt' });
    const json = JSON.parse(adapterConfigJson(lora, '/models/base')) as Record<string, unknown>;
    expect(json).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 3, lora_alpha: 12, lora_dropout: 0, bias: 'none', fan_in_fan_out: false, inference_mode: true, use_rslora: false, use_dora: false, base_model_name_or_path: '/models/base' });
    expect(json.target_modules).toEqual(['q_proj', 'v_proj', 'gate_proj', 'down_proj']);
    expect(Object.keys(json)).toEqual(Object.keys(json).sort());
    expect(parseAdapterConfig(json, 'adapter_config.json')).toEqual({ rank: 3, alpha: 12, targets: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'], baseModelNameOrPath: '/models/base' });
    expect(() => parseAdapterConfig({ ...json, use_rslora: true }, 'a.json')).toThrow(/^a\.json: use_rslora is true/);
    expect(() => parseAdapterConfig({ ...json, target_modules: ['q_proj', 'lm_head'] }, 'a.json')).toThrow(/^a\.json: target_modules .*lm_head not one of/);
    expect(() => parseAdapterConfig({ ...json, rank_pattern: { q_proj: 8 } }, 'a.json')).toThrow(/^a\.json: rank_pattern/);
  });

  it('loads adapters it wrote, refusing a misshaped or unexpected tensor by name', () => {
    const config = tinyModelConfig();
    const e = track(PolicyEngine.initialise(config, 1, engineOptions({ lora: { ...ATTENTION, seed: 1 } })));
    const file = decodeSafetensors(e.exportParameters());
    const name = 'base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight';
    const bad = new Map(file.tensors);
    bad.set(name, tensorFrom(new Float32Array(8 * 3), [8, 3]));
    const load = (tensors: typeof file.tensors): void => e.loadState({ parameters: encodeSafetensors(tensors), optimizer: null, reference: null, tag: { runId: 'lora', configHash: 'c', step: 0 } });
    expect(() => load(bad)).toThrow(new EngineInputError(`adapter_model.safetensors: tensor ${name} has shape [8, 3], the model needs [8, 4]`));
    const extra = new Map(file.tensors);
    extra.set('base_model.model.model.layers.0.mlp.up_proj.lora_A.weight', tensorFrom(new Float32Array(4 * 16), [4, 16]));
    expect(() => load(extra)).toThrow(/adapter_model\.safetensors: 1 tensor\(s\) the adapter config .* does not have, e\.g\. base_model\.model\.model\.layers\.0\.mlp\.up_proj\.lora_A\.weight/);
    const missing = new Map(file.tensors);
    missing.delete(name);
    expect(() => load(missing)).toThrow(`adapter_model.safetensors: tensor ${name} is missing`);
    expect(() => PolicyEngine.initialise(config, 1, engineOptions({ lora: { ...ATTENTION, targets: ['q_proj', 'q_proj'], seed: 1 } }))).toThrow(EngineInputError);
  });

  it('resumes from its state files bit for bit: adapters, their moments and the reference', async () => {
    const config = tinyModelConfig();
    const params = initParameters(config, 4);
    const lora = { ...ATTENTION, seed: 6 };
    const straight = track(PolicyEngine.fromParameters(config, params, engineOptions({ lora })));
    await trainSome(straight, 2);
    const files = { parameters: straight.exportParameters(), optimizer: straight.exportOptimizer(), reference: straight.exportReferencePolicy(), tag: { runId: 'r', configHash: 'h', step: 2 } };
    await trainSome(straight, 2);
    const resumed = track(PolicyEngine.fromParameters(config, params, engineOptions({ lora: { ...lora, seed: 99 } })));
    resumed.loadState(files);
    expect(resumed.optimizerSteps).toBe(2);
    await trainSome(resumed, 2);
    expect(Buffer.compare(Buffer.from(resumed.exportParameters()), Buffer.from(straight.exportParameters()))).toBe(0);
    expect(Buffer.compare(Buffer.from(resumed.exportOptimizer()), Buffer.from(straight.exportOptimizer()))).toBe(0);
    expect(resumed.baseDigest()).toBe(straight.baseDigest());
    expect(track(PolicyEngine.fromParameters(config, initParameters(config, 5), engineOptions({ lora }))).baseDigest()).not.toBe(straight.baseDigest());
  });
});
