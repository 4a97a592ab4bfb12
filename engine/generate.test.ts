// Sampling with the key/value cache against the slow full-recompute path and the plain TypeScript
// reference, and the guarantee that a sequence's tokens depend only on its own key.
import { describe, expect, it } from 'vitest';
import { uniform } from '../dro/random.js';
import { referenceLogits } from '../test/reference/llama-forward.js';
import { parseModelConfig, type ModelConfig } from './model/config.js';
import { initParameters } from './model/params.js';
import { EngineAbortError, EngineInputError } from './errors.js';
import type { GenerateRequest } from './generation.js';
import { PolicyEngine } from './policy.js';
import { engineOptions, releasedAfterAll, samplingOptions, trainStep, trainStepOptions } from './testing/fixtures.js';

// Two shapes (head sizes 4 and 16, the second as real models have them in multiples of 8): every property
// below must hold on both.
const base = { vocab_size: 17, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, initializer_range: 0.5 };
const CONFIGS: [string, ModelConfig][] = [
  ['head size 4', parseModelConfig({ ...base, hidden_size: 16 }, 'generate test config')],
  ['head size 16', parseModelConfig({ ...base, hidden_size: 64 }, 'generate test config, head size 16')],
];
const track = releasedAfterAll();

const prompt = (key: string, n: number): number[] => Array.from({ length: n }, (_, i) => Math.floor(uniform(['prompt', key, i]) * 17));
const requests = (n: number, sampleIndex = 0): GenerateRequest[] =>
  Array.from({ length: n }, (_, i) => ({ promptIds: prompt(`p${i}`, 2 + ((i * 3) % 7)), key: { seed: 7, step: 1, exampleId: `ex-${i}`, sampleIndex } }));

for (const [label, config] of CONFIGS) describe(label, () => {
  const engine = (seed = 3): PolicyEngine => track(PolicyEngine.initialise(config, seed, engineOptions()));
  describe('KV-cache decode vs full recompute', () => {
    it('greedy: the same tokens, log-probs within 1e-4, for prompts of different lengths', async () => {
      const e = engine();
      const batch = requests(5);
      const fast = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 12 }));
      const slow = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 12 }), { useCache: false });
      let worst = 0;
      fast.forEach((f, b) => {
        expect(f.ids).toEqual(slow[b]!.ids);
        expect(f.ids).toHaveLength(12);
        expect(f.truncated).toBe(true);
        f.logprobs.forEach((lp, t) => (worst = Math.max(worst, Math.abs(lp - slow[b]!.logprobs[t]!))));
      });
      console.log(`KV cache vs recompute: max log-prob difference ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
    });

    it('greedy tokens equal the argmax of the slow TypeScript reference, step by step', async () => {
      const e = engine();
      const batch = requests(3);
      const out = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 6 }));
      const params = e.parameters();
      batch.forEach((r, b) => {
        const seq = [...r.promptIds];
        for (let step = 0; step < 6; step++) {
          const logits = referenceLogits(config, params, seq).at(-1)!;
          const best = logits.indexOf(Math.max(...logits));
          expect(out[b]!.ids[step], `row ${b}, step ${step}`).toBe(best);
          seq.push(best);
        }
      });
    });

    it('sampling at temperature 1 with top-p: the cache and the recompute path draw the same tokens', async () => {
      const e = engine();
      const batch = requests(4, 2);
      const options = samplingOptions({ temperature: 1, topP: 0.9, maxNewTokens: 10 });
      const fast = await e.generate(batch, options);
      const slow = await e.generate(batch, options, { useCache: false });
      expect(fast.map((r) => r.ids)).toEqual(slow.map((r) => r.ids));
    });
  });

  describe('sessions with baked-in weights', () => {
    it('follow the weights: after a training step the cached path still equals the recompute path', async () => {
      const e = engine(8);
      const batch = requests(3);
      const before = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 6 }));
      for (let i = 0; i < 5; i++) await trainStep(e, [{ ids: [1, 2, 3, 4, 5, 6, 7, 8], completionStart: 1 }], trainStepOptions('sft', { learningRate: 5e-2 }));
      const fast = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 6 }));
      const slow = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 6 }), { useCache: false });
      expect(fast.map((r) => r.ids)).toEqual(slow.map((r) => r.ids));
      fast.forEach((r, b) => r.logprobs.forEach((lp, t) => expect(Math.abs(lp - slow[b]!.logprobs[t]!)).toBeLessThanOrEqual(1e-4)));
      // The training moved the model, so the stale sessions would have answered differently.
      expect(fast.map((r) => r.logprobs)).not.toEqual(before.map((r) => r.logprobs));
    });
  });

  describe('a sequence depends only on its own key', () => {
    it('the same (seed, exampleId, sampleIndex) gives the same sample alone, in a batch of 16, and after a retry', async () => {
      const options = samplingOptions({ temperature: 1, maxNewTokens: 8 });
      const batch = requests(16);
      const together = await engine().generate(batch, options);
      for (const i of [0, 7, 15]) {
        const [alone] = await engine().generate([batch[i]!], options);
        // Same tokens. The log-probs agree to rounding only: a batch pads rows to a common length, and a
        // longer (masked) reduction sums in a different order.
        expect(alone!.ids).toEqual(together[i]!.ids);
        expect([alone!.truncated, alone!.stopReason]).toEqual([together[i]!.truncated, together[i]!.stopReason]);
        alone!.logprobs.forEach((lp, t) => expect(Math.abs(lp - together[i]!.logprobs[t]!)).toBeLessThanOrEqual(1e-5));
      }
      // A retry: a fresh engine (as on another worker) with the same weights and batch, in another
      // order: bit-identical, log-probs included.
      const reversed = await engine().generate([...batch].reverse(), options);
      expect([...reversed].reverse()).toEqual(together);
      // A different sampleIndex is a different draw.
      const other = await engine().generate(requests(16, 1), options);
      expect(other.map((r) => r.ids)).not.toEqual(together.map((r) => r.ids));
    });

    it('stops rows independently: a stop token ends one row while the others go on', async () => {
      const e = engine();
      const batch = requests(6);
      const free = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 10 }));
      const stopAt = free[0]!.ids[2]!;
      const stopped = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 10, stopTokenIds: [stopAt] }));
      stopped.forEach((r, b) => {
        const cut = free[b]!.ids.indexOf(stopAt);
        const expected = cut < 0 ? free[b]!.ids : free[b]!.ids.slice(0, cut + 1);
        expect(r.ids).toEqual(expected);
        expect(r.stopReason).toBe(cut < 0 ? 'max-new-tokens' : 'stop-token');
        expect(r.truncated).toBe(cut < 0);
      });
    });
  });

  describe('limits and cancellation', () => {
    it('rejects prompts that would run past max_position_embeddings, bad ids, empty prompts and bad options as EngineInputError', async () => {
      const e = engine();
      const key = { seed: 1, step: 0, exampleId: 'x', sampleIndex: 0 };
      await expect(e.generate([{ promptIds: prompt('long', 60), key }], samplingOptions({ maxNewTokens: 10 }))).rejects.toThrow(
        new EngineInputError('generate request 0: 60 prompt tokens + 10 new tokens exceed max_position_embeddings 64'),
      );
      await expect(e.generate([{ promptIds: [1, 40], key }], samplingOptions())).rejects.toThrow(new EngineInputError('token id 40 at sequence 0, position 1 is outside the vocabulary (0..16)'));
      await expect(e.generate([{ promptIds: [], key }], samplingOptions())).rejects.toThrow(new EngineInputError('generate request 0: the prompt is empty'));
      await expect(e.generate([{ promptIds: [1], key }], samplingOptions({ temperature: -1 }))).rejects.toThrow(EngineInputError);
      await expect(e.generate([{ promptIds: [1], key: { ...key, exampleId: 3 as unknown as string } }], samplingOptions())).rejects.toThrow(new EngineInputError('sample key exampleId must be a string, got 3'));
    });

    it('finite weights that overflow float32 fail generate and score naming the largest tensors, never a NaN log-prob', async () => {
      const params = initParameters(config, 3);
      const huge = 'model.layers.1.self_attn.q_proj.weight';
      params.get(huge)!.fill(3e38);
      const e = track(PolicyEngine.fromParameters(config, params, engineOptions()));
      const key = { seed: 1, step: 0, exampleId: 'x', sampleIndex: 0 };
      const named = /NaN.*every weight is finite, so some overflow float32.*the largest: model\.layers\.1\.self_attn\.q_proj\.weight \(max \|w\| 3\.00e\+38\)/;
      await expect(e.generate([{ promptIds: [1, 2, 3], key }], samplingOptions({ maxNewTokens: 2 }))).rejects.toThrow(EngineInputError);
      await expect(e.generate([{ promptIds: [1, 2, 3], key }], samplingOptions({ maxNewTokens: 2 }))).rejects.toThrow(named);
      await expect(e.score([{ ids: [1, 2, 3], targetStart: 1 }])).rejects.toThrow(named);
    });

    it('an abort stops generation at the next step and leaves the engine usable', async () => {
      const e = engine();
      const controller = new AbortController();
      let steps = 0;
      await expect(
        e.generate(requests(2), samplingOptions({ temperature: 1, maxNewTokens: 40 }), {
          signal: controller.signal,
          onProgress: () => {
            if (++steps === 3) controller.abort(new Error('stop requested'));
          },
        }),
      ).rejects.toThrow(new EngineAbortError('stop requested'));
      expect(steps).toBe(3);
      const after = await e.generate(requests(2), samplingOptions({ temperature: 0, maxNewTokens: 4 }));
      expect(after.every((r) => r.ids.length === 4)).toBe(true);
    });
  });
});

describe('Llama 3.1 RoPE scaling', () => {
  it('KV-cache decode still matches full recompute', async () => {
    // head_dim 16, theta 10000: wavelengths 2π·10000^(i/8) ≈ 6.3, 19.9, 62.8, ...; original 32 with factors 1 and 4
    // keeps the first (< 8), blends the second (8..32) and slows the rest, so every regime is exercised.
    const scaled = parseModelConfig({ ...base, hidden_size: 64, rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 } }, 'generate test config, llama3 scaling');
    const e = track(PolicyEngine.initialise(scaled, 3, engineOptions()));
    const batch = requests(4);
    const fast = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 20 }));
    const slow = await e.generate(batch, samplingOptions({ temperature: 0, maxNewTokens: 20 }), { useCache: false });
    let worst = 0;
    fast.forEach((f, b) => {
      expect(f.ids).toEqual(slow[b]!.ids);
      f.logprobs.forEach((lp, t) => (worst = Math.max(worst, Math.abs(lp - slow[b]!.logprobs[t]!))));
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
    const sampled = samplingOptions({ temperature: 1, topP: 0.9, maxNewTokens: 12 });
    expect((await e.generate(requests(3, 1), sampled)).map((r) => r.ids)).toEqual((await e.generate(requests(3, 1), sampled, { useCache: false })).map((r) => r.ids));
  });
});

describe('choosing tokens on a helper thread', () => {
  it('gives exactly the tokens and log-probs of choosing every row on the engine thread, and names a row whose logits are NaN', async () => {
    const wide = parseModelConfig({ ...base, vocab_size: 8192, hidden_size: 32 }, 'generate test config, 8192 tokens');
    const e = track(PolicyEngine.initialise(wide, 5, engineOptions()));
    const batch = Array.from({ length: 16 }, (_, i) => ({ promptIds: [1 + i, 2 * i + 3, 7], key: { seed: 9, step: 2, exampleId: `wide-${i}`, sampleIndex: 0 } }));
    for (const sampling of [{ temperature: 0 }, { temperature: 1, topP: 0.9 }, { temperature: 0.8, topK: 50 }]) {
      const both = await e.generate(batch, samplingOptions({ ...sampling, maxNewTokens: 6 }));
      const one = await e.generate(batch, samplingOptions({ ...sampling, maxNewTokens: 6 }), { samplingThreads: 1 });
      expect(both).toEqual(one);
    }
    const params = initParameters(wide, 5);
    params.get('model.layers.1.self_attn.q_proj.weight')!.fill(3e38);
    const broken = track(PolicyEngine.fromParameters(wide, params, engineOptions()));
    await expect(broken.generate(batch, samplingOptions({ maxNewTokens: 2 }))).rejects.toThrow(/^generate request 0, new token 0: .*NaN.*the largest: model\.layers\.1\.self_attn\.q_proj\.weight/);
  });
});
