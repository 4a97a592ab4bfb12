// Llama 3.1 RoPE scaling: the inverse frequencies against hand-computed values and a slow reference written
// the way transformers' _compute_llama3_parameters is (masks over all dimensions), the config forms that
// carry it, and the scoring graph actually using it.
import { afterAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../policy.js';
import { engineOptions } from '../testing/fixtures.js';
import { ModelConfigError, modelConfigToJson, parseModelConfig, type ModelConfig } from './config.js';
import { initParameters } from './params.js';
import { rotaryInverseFrequencies } from './rope.js';

const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
const small = { vocab_size: 32, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 };

/** The slow reference: plain frequencies, then the three masks over every dimension, then the selection. */
function referenceInverseFrequencies(theta: number, dim: number, s: typeof llama3): number[] {
  const invFreq: number[] = [];
  for (let i = 0; i < dim; i += 2) invFreq.push(1 / Math.pow(theta, i / dim));
  const lowWave = s.original_max_position_embeddings / s.low_freq_factor;
  const highWave = s.original_max_position_embeddings / s.high_freq_factor;
  const wavelengths = invFreq.map((f) => (2 * Math.PI) / f);
  const slowed = invFreq.map((f, i) => (wavelengths[i]! > lowWave ? f / s.factor : f));
  const smooth = wavelengths.map((w) => (s.original_max_position_embeddings / w - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor));
  const blended = slowed.map((f, i) => (1 - smooth[i]!) * (f / s.factor) + smooth[i]! * f);
  const medium = wavelengths.map((w) => !(w < highWave) && !(w > lowWave));
  return slowed.map((f, i) => (medium[i] ? blended[i]! : f));
}

describe('rotaryInverseFrequencies', () => {
  it('matches hand-computed values: kept, kept, blended, slowed', () => {
    // head_dim 8, theta 10000: plain [1, 0.1, 0.01, 0.001], wavelengths 2π·[1, 10, 100, 1000].
    // original 1000 / low 1 / high 4: keep below 250, slow above 1000; 628.3 is between:
    // smooth = (1000 / 628.3185… − 1) / 3 = 0.1971831436…, value = 0.01·((1 − smooth)/8 + smooth).
    const config = parseModelConfig({ ...small, hidden_size: 32, rope_theta: 10000, rope_scaling: { ...llama3, original_max_position_embeddings: 1000 } });
    expect(config.head_dim).toBe(8);
    const f = rotaryInverseFrequencies(config);
    expect(f[0]).toBe(1);
    expect(f[1]).toBeCloseTo(0.1, 15);
    expect(f[2]).toBeCloseTo(0.002975352507, 12);
    expect(f[3]).toBeCloseTo(0.000125, 15);
  });

  it('equals the slow reference on Llama 3.1 8B (head_dim 128, theta 500000) and Llama 3.2 1B (factor 32)', () => {
    for (const scaling of [llama3, { ...llama3, factor: 32 }]) {
      const config = parseModelConfig({ ...small, hidden_size: 512, rope_theta: 500000, max_position_embeddings: 131072, rope_scaling: scaling });
      expect(config.head_dim).toBe(128);
      const fast = rotaryInverseFrequencies(config);
      const slow = referenceInverseFrequencies(500000, 128, scaling);
      fast.forEach((v, i) => expect(Math.abs(v - slow[i]!) / slow[i]!, `dimension ${i}`).toBeLessThan(1e-15));
      // All three regimes occur: some kept, some slowed by the full factor, some between.
      const plain = rotaryInverseFrequencies({ ...config, rope_scaling: undefined });
      const ratios = fast.map((v, i) => plain[i]! / v);
      expect(ratios.some((r) => Math.abs(r - 1) < 1e-12)).toBe(true);
      expect(ratios.some((r) => Math.abs(r - scaling.factor) < 1e-9)).toBe(true);
      expect(ratios.some((r) => r > 1 + 1e-6 && r < scaling.factor - 1e-6)).toBe(true);
    }
  });

  it('without scaling: theta^(−2i/d)', () => {
    expect(rotaryInverseFrequencies(parseModelConfig({ ...small, hidden_size: 16, rope_theta: 100 }))).toEqual([1, 0.1]);
  });
});

describe('config forms of llama3 scaling', () => {
  const expected = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };

  it('reads rope_scaling with rope_type or the older type, and transformers v5 rope_parameters', () => {
    const { rope_type: _, ...withoutType } = llama3;
    for (const json of [
      { ...small, rope_theta: 500000, rope_scaling: llama3 },
      { ...small, rope_theta: 500000, rope_scaling: { ...withoutType, type: 'llama3' } },
      { ...small, rope_parameters: { ...llama3, rope_theta: 500000 } },
      { ...small, rope_theta: 500000, rope_scaling: llama3, rope_parameters: { ...llama3, rope_theta: 500000 } },
    ]) {
      const c = parseModelConfig(json, 'cfg.json');
      expect(c.rope_scaling).toEqual(expected);
      expect(c.rope_theta).toBe(500000);
    }
  });

  it('takes original_max_position_embeddings from the top level, else max_position_embeddings, when the scaling leaves it out', () => {
    const { original_max_position_embeddings: _, ...rest } = llama3;
    expect(parseModelConfig({ ...small, rope_scaling: rest }).rope_scaling?.original_max_position_embeddings).toBe(64);
    expect(parseModelConfig({ ...small, original_max_position_embeddings: 32, rope_scaling: rest }).rope_scaling?.original_max_position_embeddings).toBe(32);
  });

  it('round-trips through modelConfigToJson, which writes rope_scaling', () => {
    const c = parseModelConfig({ ...small, rope_theta: 500000, rope_scaling: llama3 });
    const json = modelConfigToJson(c);
    expect(json.rope_scaling).toEqual(expected);
    expect(parseModelConfig(JSON.parse(JSON.stringify(json)))).toEqual(c);
    expect(modelConfigToJson(parseModelConfig(small)).rope_scaling).toBeNull();
    expect('rope_scaling' in parseModelConfig(small)).toBe(false);
  });

  const refused: [string, Record<string, unknown>, string][] = [
    ['linear scaling', { rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling: rope_type "linear" is not supported (only "default", plain RoPE, and "llama3")'],
    ['dynamic scaling', { rope_scaling: { rope_type: 'dynamic', factor: 2 } }, 'rope_scaling: rope_type "dynamic" is not supported (only "default", plain RoPE, and "llama3")'],
    ['yarn in rope_parameters', { rope_parameters: { rope_type: 'yarn', factor: 4 } }, 'rope_parameters: rope_type "yarn" is not supported (only "default", plain RoPE, and "llama3")'],
    ['longrope', { rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [2] } }, 'rope_scaling: rope_type "longrope" is not supported (only "default", plain RoPE, and "llama3")'],
    ['a missing factor', { rope_scaling: { ...llama3, factor: undefined } }, 'rope_scaling: factor must be a positive number for rope_type "llama3", got undefined'],
    ['high not above low', { rope_scaling: { ...llama3, high_freq_factor: 1 } }, 'rope_scaling: high_freq_factor (1) must be greater than low_freq_factor (1)'],
    ['a fractional original length', { rope_scaling: { ...llama3, original_max_position_embeddings: 8.5 } }, 'rope_scaling: original_max_position_embeddings must be a positive integer, got 8.5'],
    ['a partial rotary factor', { rope_scaling: { ...llama3, partial_rotary_factor: 0.5 } }, 'rope_scaling: partial_rotary_factor 0.5 is not supported (rotary embeddings over the whole head only)'],
    ['two type keys that disagree', { rope_scaling: { ...llama3, type: 'linear' } }, 'rope_scaling: rope_type "llama3" and type "linear" disagree'],
    ['rope_scaling and rope_parameters that disagree', { rope_scaling: llama3, rope_parameters: { ...llama3, factor: 4 } }, 'rope_parameters: describes another RoPE scaling than rope_scaling'],
  ];
  for (const [what, fields, message] of refused) {
    it(`refuses ${what}, naming the field`, () => {
      let error: unknown;
      try {
        parseModelConfig({ ...small, ...fields }, 'm/config.json');
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ModelConfigError);
      expect((error as ModelConfigError).problems).toHaveLength(1);
      expect((error as ModelConfigError).problems[0]).toContain(message);
    });
  }
});

describe('the scoring graph uses the scaling', () => {
  const engines: PolicyEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.release();
  });

  it('the same weights score alike where rotation cannot matter (one key) and differently where positions matter', async () => {
    // head_dim 8, theta 10000: wavelengths 2π·[1, 10, 100, 1000]; original 64 slows the two longest.
    const plain: ModelConfig = parseModelConfig({ ...small, rope_theta: 10000, initializer_range: 0.5 });
    const scaled: ModelConfig = parseModelConfig({ ...small, rope_theta: 10000, initializer_range: 0.5, rope_scaling: { ...llama3, original_max_position_embeddings: 64 } });
    const params = initParameters(plain, 5);
    const ids = [3, 17, 4, 29, 8, 1, 22, 9, 14, 30, 2, 7];
    const score = async (config: ModelConfig): Promise<number[]> => {
      const e = PolicyEngine.fromParameters(config, params, engineOptions());
      engines.push(e);
      const [r] = await e.score([{ ids, targetStart: 1 }]);
      return r!.logprobs;
    };
    const a = await score(plain);
    const b = await score(scaled);
    // The first target is predicted from one token, whose attention is 1 whatever the rotation.
    expect(Math.abs(a[0]! - b[0]!)).toBeLessThan(1e-6);
    const largest = Math.max(...a.slice(1).map((v, i) => Math.abs(v - b[i + 1]!)));
    expect(largest).toBeGreaterThan(1e-3);
  });
});
