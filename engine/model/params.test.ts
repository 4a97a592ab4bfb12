// Parameter names and shapes (HF layout), and the seeded initialisation: deterministic, keyed per
// element, normal with the configured std, norms at one and biases at zero.
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from './config.js';
import { assertModelFits, initParameters, ModelTooLargeError, parameterCount, parameterSpecs, standardNormalAt } from './params.js';

const tiny = parseModelConfig({ vocab_size: 10, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 });

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function get(params: Map<string, Float32Array>, name: string): Float32Array {
  const t = params.get(name);
  if (t === undefined) throw new Error(`missing ${name}`);
  return t;
}

describe('parameterSpecs', () => {
  it('lists HF names and [out, in] shapes in a fixed order (untied, no bias)', () => {
    const layer = (i: number) => [
      [`model.layers.${i}.input_layernorm.weight`, [8]],
      [`model.layers.${i}.self_attn.q_proj.weight`, [8, 8]],
      [`model.layers.${i}.self_attn.k_proj.weight`, [4, 8]],
      [`model.layers.${i}.self_attn.v_proj.weight`, [4, 8]],
      [`model.layers.${i}.self_attn.o_proj.weight`, [8, 8]],
      [`model.layers.${i}.post_attention_layernorm.weight`, [8]],
      [`model.layers.${i}.mlp.gate_proj.weight`, [12, 8]],
      [`model.layers.${i}.mlp.up_proj.weight`, [12, 8]],
      [`model.layers.${i}.mlp.down_proj.weight`, [8, 12]],
    ];
    expect(parameterSpecs(tiny).map((s) => [s.name, s.shape])).toEqual([
      ['model.embed_tokens.weight', [10, 8]],
      ...layer(0),
      ...layer(1),
      ['model.norm.weight', [8]],
      ['lm_head.weight', [10, 8]],
    ]);
    // 80 embed + 2·(8 + 64 + 32 + 32 + 64 + 8 + 96 + 96 + 96) + 8 norm + 80 lm_head
    expect(parameterCount(tiny)).toBe(80 + 2 * 496 + 8 + 80);
  });

  it('adds q/k/v biases with the projection out sizes, and drops lm_head when tied', () => {
    const c = parseModelConfig({ ...tiny, model_type: 'qwen2', attention_bias: true, tie_word_embeddings: true, num_hidden_layers: 1, head_dim: 6 });
    expect(parameterSpecs(c).map((s) => [s.name, s.shape])).toEqual([
      ['model.embed_tokens.weight', [10, 8]],
      ['model.layers.0.input_layernorm.weight', [8]],
      ['model.layers.0.self_attn.q_proj.weight', [12, 8]],
      ['model.layers.0.self_attn.k_proj.weight', [6, 8]],
      ['model.layers.0.self_attn.v_proj.weight', [6, 8]],
      ['model.layers.0.self_attn.q_proj.bias', [12]],
      ['model.layers.0.self_attn.k_proj.bias', [6]],
      ['model.layers.0.self_attn.v_proj.bias', [6]],
      ['model.layers.0.self_attn.o_proj.weight', [8, 12]],
      ['model.layers.0.post_attention_layernorm.weight', [8]],
      ['model.layers.0.mlp.gate_proj.weight', [12, 8]],
      ['model.layers.0.mlp.up_proj.weight', [12, 8]],
      ['model.layers.0.mlp.down_proj.weight', [8, 12]],
      ['model.norm.weight', [8]],
    ]);
  });
});

describe('initParameters', () => {
  it('gives every spec a tensor of its size', () => {
    const params = initParameters(tiny, 1);
    expect([...params.keys()]).toEqual(parameterSpecs(tiny).map((s) => s.name));
    for (const spec of parameterSpecs(tiny)) expect(get(params, spec.name).length).toBe(spec.shape.reduce((a, b) => a * b, 1));
  });

  it('is deterministic: the same seed gives identical bytes, another seed different weights', () => {
    const a = initParameters(tiny, 7);
    const b = initParameters(tiny, 7);
    const c = initParameters(tiny, 8);
    for (const [name, tensor] of a) {
      expect(bytes(get(b, name)).equals(bytes(tensor))).toBe(true);
      if (!name.endsWith('norm.weight')) expect(bytes(get(c, name)).equals(bytes(tensor))).toBe(false);
    }
  });

  it('keys each element by (seed, name, index) alone: independent of layer count and tensor order', () => {
    const oneLayer = initParameters({ ...tiny, num_hidden_layers: 1 }, 3);
    const twoLayers = initParameters(tiny, 3);
    for (const [name, tensor] of oneLayer) {
      if (name.startsWith('model.layers.')) expect(bytes(get(twoLayers, name)).equals(bytes(tensor))).toBe(true);
    }
    const q = get(twoLayers, 'model.layers.1.self_attn.q_proj.weight');
    for (const i of [0, 1, 2, 17, 63]) expect(q[i]).toBe(Math.fround(tiny.initializer_range * standardNormalAt(3, 'model.layers.1.self_attn.q_proj.weight', i)));
    // Different tensors of one shape get different draws.
    expect(bytes(get(twoLayers, 'model.layers.0.mlp.gate_proj.weight')).equals(bytes(get(twoLayers, 'model.layers.0.mlp.up_proj.weight')))).toBe(false);
  });

  it('draws N(0, initializer_range²) weights; norms are exactly 1 and biases exactly 0', () => {
    const c = parseModelConfig({ vocab_size: 16, hidden_size: 128, intermediate_size: 256, num_hidden_layers: 1, num_attention_heads: 4, model_type: 'qwen2', initializer_range: 0.05 });
    const params = initParameters(c, 11);
    const w = get(params, 'model.layers.0.mlp.gate_proj.weight'); // 32,768 draws
    let sum = 0;
    let sumSq = 0;
    let withinOneStd = 0;
    for (const v of w) {
      sum += v;
      sumSq += v * v;
      if (Math.abs(v) < 0.05) withinOneStd++;
    }
    const mean = sum / w.length;
    const std = Math.sqrt(sumSq / w.length - mean * mean);
    // Standard errors: mean 0.05/√32768 ≈ 2.8e-4, std ≈ 0.05/√65536 ≈ 2e-4, share within 1σ ≈ 2.6e-3.
    expect(Math.abs(mean)).toBeLessThan(1.5e-3);
    expect(Math.abs(std - 0.05)).toBeLessThan(1.5e-3);
    expect(Math.abs(withinOneStd / w.length - 0.6827)).toBeLessThan(0.015);
    for (const name of ['model.layers.0.input_layernorm.weight', 'model.layers.0.post_attention_layernorm.weight', 'model.norm.weight']) {
      expect(get(params, name).every((v) => v === 1)).toBe(true);
    }
    for (const name of ['model.layers.0.self_attn.q_proj.bias', 'model.layers.0.self_attn.k_proj.bias', 'model.layers.0.self_attn.v_proj.bias']) {
      expect(get(params, name).every((v) => v === 0)).toBe(true);
    }
    expect(get(params, 'model.embed_tokens.weight').some((v) => v !== 0)).toBe(true);
  });

  it('rejects a seed that is not a safe integer, and an index outside [0, 2^32)', () => {
    expect(() => initParameters(tiny, 0.5)).toThrow('seed must be a safe integer, got 0.5');
    expect(() => standardNormalAt(Number.NaN, 'x', 0)).toThrow('seed must be a safe integer, got NaN');
    expect(() => standardNormalAt(1, 'x', -1)).toThrow('index must be an integer in [0, 2^32), got -1');
  });
});

describe('assertModelFits', () => {
  it('refuses absurd sizes up front, naming the field and the memory needed against what the machine has', () => {
    const GiB = 1024 ** 3;
    const layers = { ...tiny, hidden_size: 4096, intermediate_size: 11008, head_dim: 128, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 1_000_000 };
    const started = performance.now();
    expect(() => assertModelFits(layers, 'cfg.json', 24 * GiB)).toThrow(/^cfg\.json: num_hidden_layers = 1000000 gives 2\.02e\+14 parameters; loading them in float32 needs about .* GiB, more than this machine's 24\.0 GiB$/);
    expect(performance.now() - started).toBeLessThan(5_000); // counted per layer, not per tensor of a million layers
    expect(() => assertModelFits({ ...tiny, vocab_size: 152_000, hidden_size: 1_000_000, head_dim: 2 }, 'cfg.json', 24 * GiB)).toThrow(/^cfg\.json: hidden_size makes tensor model\.embed_tokens\.weight \[152000, 1000000\] .* GiB, more than one buffer holds/);
    const llama70b = { ...tiny, vocab_size: 32000, hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, head_dim: 128 };
    expect(() => assertModelFits(llama70b, 'cfg.json', 24 * GiB)).toThrow(/num_hidden_layers = 80 gives 6\.9\de\+10 parameters/);
    expect(() => assertModelFits(tiny, 'cfg.json', 24 * GiB)).not.toThrow();
    expect(() => initParameters({ ...layers }, 1)).toThrow(ModelTooLargeError);
  });
});
