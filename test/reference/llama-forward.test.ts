// The reference forward pass checked against hand arithmetic and the properties the ONNX graphs must
// share with it: RoPE, causality, padding, GQA, tying, normalised log-probs with ranks, attention biases.
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../engine/model/config.js';
import type { ModelConfig } from '../../engine/model/config.js';
import { elementCount, initParameters, parameterSpecs } from '../../engine/model/params.js';
import { applyRope, logSumExp, referenceLogits, referenceLogprobsAndRanks, rotateHalf } from './llama-forward.js';

type Params = Map<string, Float32Array | Float64Array>;

/** Every projection zero, norms one: the model's output is then RMSNorm(embed)·w_final·E^T. */
function zeroModel(config: ModelConfig): Params {
  const params: Params = new Map();
  for (const spec of parameterSpecs(config)) {
    const t = new Float64Array(elementCount(spec.shape));
    if (spec.name.endsWith('norm.weight')) t.fill(1);
    params.set(spec.name, t);
  }
  return params;
}

function get(params: Params, name: string): Float32Array | Float64Array {
  const t = params.get(name);
  if (t === undefined) throw new Error(`missing ${name}`);
  return t;
}

function set(params: Params, name: string, values: number[]): void {
  const t = get(params, name);
  expect(values.length).toBe(t.length);
  t.set(values);
}

function copy(params: Params): Params {
  return new Map([...params].map(([name, t]): [string, Float32Array | Float64Array] => [name, t.slice()]));
}

function expectClose(actual: number[][], expected: number[][], digits = 12): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, t) => {
    const want = expected[t] ?? [];
    expect(row.length).toBe(want.length);
    row.forEach((v, i) => expect(v).toBeCloseTo(want[i] ?? Number.NaN, digits));
  });
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  let max = 0;
  a.forEach((row, t) => row.forEach((v, i) => (max = Math.max(max, Math.abs(v - (b[t]?.[i] ?? Number.NaN))))));
  return max;
}

const tiny2 = (fields: Record<string, unknown> = {}) =>
  parseModelConfig({ vocab_size: 2, hidden_size: 2, intermediate_size: 2, num_hidden_layers: 1, num_attention_heads: 1, tie_word_embeddings: true, ...fields });

// A small random model whose weights are large enough that every path visibly moves the logits.
const small = parseModelConfig({ vocab_size: 13, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, initializer_range: 0.4, rms_norm_eps: 1e-5 });
const smallParams: Params = initParameters(small, 5);

describe('hand-computed cases', () => {
  it('(a) with zero attention and MLP weights, logits = RMSNorm(embed[id])·w_final·E^T', () => {
    const config = tiny2({ rms_norm_eps: 3.5 });
    const params = zeroModel(config);
    set(params, 'model.embed_tokens.weight', [3, 4, -4, 3]);
    set(params, 'model.norm.weight', [2, -1]);
    set(params, 'model.layers.0.input_layernorm.weight', [5, 7]); // irrelevant: every projection is zero
    // token 0: mean([3², 4²]) + eps = 12.5 + 3.5 = 16 → [3, 4]/4 = [0.75, 1] → ·[2, −1] = [1.5, −1]
    //   logits: [3, 4]·[1.5, −1] = 0.5; [−4, 3]·[1.5, −1] = −9
    // token 1: mean([16, 9]) + eps = 16 → [−1, 0.75] → ·[2, −1] = [−2, −0.75]
    //   logits: [3, 4]·[−2, −0.75] = −9; [−4, 3]·[−2, −0.75] = 5.75
    expectClose(referenceLogits(config, params, [0, 1, 0]), [
      [0.5, -9],
      [-9, 5.75],
      [0.5, -9],
    ]);
  });

  it('one head with identity projections: RoPE on q and k only, softmax over the causal keys', () => {
    const config = tiny2({ rms_norm_eps: 3.5 });
    const params = zeroModel(config);
    set(params, 'model.embed_tokens.weight', [3, 4, -4, 3]);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) set(params, `model.layers.0.self_attn.${p}.weight`, [1, 0, 0, 1]);
    const n0 = [0.75, 1]; // RMSNorm of [3, 4] (see (a))
    const n1 = [-1, 0.75]; // RMSNorm of [−4, 3]
    // head_dim 2: inv_freq = [1], so position 1 rotates [a, b] by one radian: [a·cos1 − b·sin1, b·cos1 + a·sin1].
    const rot1 = (x: number[]) => [x[0]! * Math.cos(1) - x[1]! * Math.sin(1), x[1]! * Math.cos(1) + x[0]! * Math.sin(1)];
    const q1 = rot1(n1);
    const k1 = rot1(n1);
    const s0 = (q1[0]! * n0[0]! + q1[1]! * n0[1]!) / Math.SQRT2; // key 0 sits at position 0: unrotated
    const s1 = (q1[0]! * k1[0]! + q1[1]! * k1[1]!) / Math.SQRT2;
    const w0 = Math.exp(s0) / (Math.exp(s0) + Math.exp(s1));
    const attn1 = [w0 * n0[0]! + (1 - w0) * n1[0]!, w0 * n0[1]! + (1 - w0) * n1[1]!]; // values are not rotated
    const x0 = [3 + n0[0]!, 4 + n0[1]!]; // position 0 attends only to itself
    const x1 = [-4 + attn1[0]!, 3 + attn1[1]!];
    const logitsOf = (x: number[]) => {
      const scale = 1 / Math.sqrt((x[0]! ** 2 + x[1]! ** 2) / 2 + 3.5);
      const h = [x[0]! * scale, x[1]! * scale];
      return [3 * h[0]! + 4 * h[1]!, -4 * h[0]! + 3 * h[1]!];
    };
    expectClose(referenceLogits(config, params, [0, 1]), [logitsOf(x0), logitsOf(x1)]);
  });

  it('the MLP is down·(silu(gate·n) ⊙ up·n), added to the residual', () => {
    const config = tiny2({ rms_norm_eps: 3.5, intermediate_size: 1 });
    const params = zeroModel(config);
    set(params, 'model.embed_tokens.weight', [3, 4, -4, 3]);
    set(params, 'model.layers.0.mlp.gate_proj.weight', [2, 0]);
    set(params, 'model.layers.0.mlp.up_proj.weight', [0, 3]);
    set(params, 'model.layers.0.mlp.down_proj.weight', [1, -1]);
    // token 0: n = [0.75, 1]; gate = 1.5, up = 3; silu(1.5) = 1.5/(1 + e^−1.5); m = silu·up; x = [3 + m, 4 − m]
    const m = (1.5 / (1 + Math.exp(-1.5))) * 3;
    const x = [3 + m, 4 - m];
    const scale = 1 / Math.sqrt((x[0]! ** 2 + x[1]! ** 2) / 2 + 3.5);
    expectClose(referenceLogits(config, params, [0]), [[(3 * x[0]! + 4 * x[1]!) * scale, (-4 * x[0]! + 3 * x[1]!) * scale]]);
  });
});

describe('(b) RoPE', () => {
  it('is the identity at position 0 and preserves norms elsewhere', () => {
    const x = [0.3, -1.2, 2.5, 0.7, -0.4, 1.1, 0.9, -2.2];
    expect(applyRope(x, 0, 10000)).toEqual(x);
    const norm = (v: number[]) => Math.hypot(...v);
    for (const t of [1, 7, 1000]) expect(norm(applyRope(x, t, 10000))).toBeCloseTo(norm(x), 12);
  });

  it('rotates the pairs (i, i + d/2) by position·theta^(−2i/d)', () => {
    expect(rotateHalf([1, 2, 3, 4])).toEqual([-3, -4, 1, 2]);
    // d = 4, theta = 100: inv_freq = [1, 100^(−1/2) = 0.1]; at position 2 the angles are 2 and 0.2.
    const r = applyRope([1, 2, 3, 4], 2, 100);
    const c = Math.cos;
    const s = Math.sin;
    expectClose([r], [[1 * c(2) - 3 * s(2), 2 * c(0.2) - 4 * s(0.2), 3 * c(2) + 1 * s(2), 4 * c(0.2) + 2 * s(0.2)]]);
  });

  it('makes q·k depend on the relative position only', () => {
    const q = [0.5, -1, 2, 0.25];
    const k = [1, 0.5, -0.75, 2];
    const dot = (a: number[], b: number[]) => a.reduce((sum, v, i) => sum + v * (b[i] ?? Number.NaN), 0);
    expect(dot(applyRope(q, 9, 10000), applyRope(k, 4, 10000))).toBeCloseTo(dot(applyRope(q, 5, 10000), applyRope(k, 0, 10000)), 12);
  });
});

describe('masks', () => {
  const ids = [1, 5, 2, 7, 3];

  it('(c) causality: a later token does not change earlier logits', () => {
    const a = referenceLogits(small, smallParams, ids);
    const b = referenceLogits(small, smallParams, [1, 5, 2, 11, 3]);
    expect(b.slice(0, 3)).toEqual(a.slice(0, 3));
    expect(maxAbsDiff(b.slice(3), a.slice(3))).toBeGreaterThan(1e-3);
  });

  it('(d) padding: appended positions with mask 0 leave the real positions unchanged', () => {
    const a = referenceLogits(small, smallParams, ids);
    const padded = referenceLogits(small, smallParams, [...ids, 0, 9], [1, 1, 1, 1, 1, 0, 0]);
    expect(padded.slice(0, ids.length)).toEqual(a);
  });

  it('(d) padding: masked keys are never attended, so left padding only shifts positions, which RoPE ignores', () => {
    const a = referenceLogits(small, smallParams, ids);
    const mask = [0, 0, 1, 1, 1, 1, 1];
    const left = referenceLogits(small, smallParams, [4, 6, ...ids], mask);
    expect(maxAbsDiff(left.slice(2), a)).toBeLessThan(1e-10);
    // The pad ids themselves do not matter, and their rows stay finite although position 0 attends to nothing.
    const otherPads = referenceLogits(small, smallParams, [12, 0, ...ids], mask);
    expect(maxAbsDiff(otherPads.slice(2), left.slice(2))).toBe(0);
    expect(left.flat().every(Number.isFinite)).toBe(true);
    // Unmasked, the same tokens do change the logits: the mask is what hides them.
    expect(maxAbsDiff(referenceLogits(small, smallParams, [4, 6, ...ids]).slice(2), a)).toBeGreaterThan(1e-3);
  });

  it('a query with no allowed key gets a zero attention output', () => {
    const config = tiny2({ rms_norm_eps: 3.5 });
    const params = zeroModel(config);
    set(params, 'model.embed_tokens.weight', [3, 4, -4, 3]);
    set(params, 'model.norm.weight', [2, -1]);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) set(params, `model.layers.0.self_attn.${p}.weight`, [1, 0, 0, 1]);
    // Position 0 is masked and can only see itself: x stays embed[0], so its logits are those of (a).
    expectClose(referenceLogits(config, params, [0, 1], [0, 1]).slice(0, 1), [[0.5, -9]]);
  });
});

describe('model variants', () => {
  it('(e) GQA: kv_heads = heads with duplicated k/v weights equals kv_heads = heads/2', () => {
    for (const qwen of [false, true]) {
      const grouped = { ...small, attention_bias: qwen };
      const groupedParams: Params = initParameters(grouped, 9);
      if (qwen) {
        // Nonzero biases, so that duplicating them is tested too.
        for (const [name, t] of groupedParams) if (name.endsWith('.bias')) t.forEach((_, i) => (t[i] = 0.3 * Math.sin(7 * i + name.length)));
      }
      const full: ModelConfig = { ...grouped, num_key_value_heads: grouped.num_attention_heads };
      const fullParams = copy(groupedParams);
      const d = grouped.head_dim;
      const hidden = grouped.hidden_size;
      const group = grouped.num_attention_heads / grouped.num_key_value_heads;
      for (let layer = 0; layer < grouped.num_hidden_layers; layer++) {
        for (const proj of ['k_proj', 'v_proj']) {
          const base = `model.layers.${layer}.self_attn.${proj}`;
          const w = get(groupedParams, `${base}.weight`);
          const wFull = new Float32Array(full.num_key_value_heads * d * hidden);
          for (let h = 0; h < full.num_key_value_heads; h++) wFull.set(w.subarray(Math.floor(h / group) * d * hidden, (Math.floor(h / group) + 1) * d * hidden), h * d * hidden);
          fullParams.set(`${base}.weight`, wFull);
          if (qwen) {
            const b = get(groupedParams, `${base}.bias`);
            const bFull = new Float32Array(full.num_key_value_heads * d);
            for (let h = 0; h < full.num_key_value_heads; h++) bFull.set(b.subarray(Math.floor(h / group) * d, (Math.floor(h / group) + 1) * d), h * d);
            fullParams.set(`${base}.bias`, bFull);
          }
        }
      }
      const ids = [3, 0, 12, 7, 7, 1];
      expectClose(referenceLogits(full, fullParams, ids), referenceLogits(grouped, groupedParams, ids));
    }
  });

  it('(f) tied embeddings equal an untied model whose lm_head is the embedding', () => {
    const tied: ModelConfig = { ...small, tie_word_embeddings: true };
    const tiedParams: Params = initParameters(tied, 2);
    const untiedParams = copy(tiedParams);
    untiedParams.set('lm_head.weight', get(tiedParams, 'model.embed_tokens.weight').slice());
    const ids = [4, 8, 1, 0];
    const untied = { ...small, tie_word_embeddings: false };
    expect(referenceLogits(untied, untiedParams, ids)).toEqual(referenceLogits(tied, tiedParams, ids));
    // And the untied model really reads lm_head.
    get(untiedParams, 'lm_head.weight')[0] = 3;
    expect(maxAbsDiff(referenceLogits(untied, untiedParams, ids), referenceLogits(tied, tiedParams, ids))).toBeGreaterThan(1e-3);
  });

  it('(h) attention biases are added: v bias alone, by hand, and each of q, k, v changes the output', () => {
    const config = tiny2({ model_type: 'qwen2', rms_norm_eps: 6 });
    const params = zeroModel(config);
    set(params, 'model.embed_tokens.weight', [3, 4, -4, 3]);
    set(params, 'model.layers.0.self_attn.o_proj.weight', [1, 0, 0, 1]);
    set(params, 'model.layers.0.self_attn.q_proj.bias', [0.5, 2]);
    set(params, 'model.layers.0.self_attn.k_proj.bias', [-1, 1]);
    set(params, 'model.layers.0.self_attn.v_proj.bias', [1, -2]);
    // Every value is the bias [1, −2], so any softmax averages to it: x = [3, 4] + [1, −2] = [4, 2];
    // mean([16, 4]) + 6 = 16 → [1, 0.5]; logits: [3, 4]·[1, 0.5] = 5, [−4, 3]·[1, 0.5] = −2.5.
    expectClose(referenceLogits(config, params, [0, 0]), [
      [5, -2.5],
      [5, -2.5],
    ]);

    const qwen: ModelConfig = { ...small, attention_bias: true };
    const base: Params = initParameters(qwen, 4);
    const ids = [2, 9, 4, 4, 10];
    const plain = referenceLogits(qwen, base, ids);
    // Zero biases (the init) compute what the bias-free model computes with the same weights.
    const noBias = new Map([...base].filter(([name]) => !name.endsWith('.bias')));
    expect(referenceLogits(small, noBias, ids)).toEqual(plain);
    for (const proj of ['q_proj', 'k_proj', 'v_proj']) {
      const withBias = copy(base);
      const b = get(withBias, `model.layers.0.self_attn.${proj}.bias`);
      b.forEach((_, i) => (b[i] = 1 + 0.5 * Math.cos(i)));
      expect(maxAbsDiff(referenceLogits(qwen, withBias, ids), plain)).toBeGreaterThan(1e-3);
    }
  });
});

describe('(g) log-probs and ranks', () => {
  it('log-probs are normalised over the vocabulary and match logits − logsumexp', () => {
    const prefix = [3, 1, 4];
    const logprobs = Array.from({ length: small.vocab_size }, (_, v) => {
      const r = referenceLogprobsAndRanks(small, smallParams, [...prefix, v], prefix.length);
      expect(r.logprobs.length).toBe(1);
      return r.logprobs[0] ?? Number.NaN;
    });
    expect(logSumExp(logprobs)).toBeCloseTo(0, 12);
    const row = referenceLogits(small, smallParams, prefix)[2] ?? [];
    expectClose([logprobs], [row.map((l) => l - logSumExp(row))]);
  });

  it('rank = 1 + the number of strictly greater logits, so ties share the better rank', () => {
    const config = tiny2({ vocab_size: 4, rms_norm_eps: 0.5 });
    const params = zeroModel(config);
    // RMSNorm([1, 0]) = [1, 0]/√(0.5 + 0.5) = [1, 0]; likewise [0, ±1] stay as they are.
    set(params, 'model.embed_tokens.weight', [1, 0, 0, 1, 0, 1, 0, -1]);
    // after token 0: logits [1, 0, 0, 0]; after token 1 or 2: [0, 1, 1, −1]
    const { logprobs, ranks } = referenceLogprobsAndRanks(config, params, [0, 1, 2, 3], 1);
    expect(ranks).toEqual([2, 1, 4]); // target 1 (0 < 1); target 2 (ties token 1); target 3 (below three)
    const e = Math.E;
    expectClose([logprobs], [[0 - Math.log(e + 3), 1 - Math.log(1 + 2 * e + 1 / e), -1 - Math.log(1 + 2 * e + 1 / e)]]);
    expect(referenceLogprobsAndRanks(config, params, [0, 1, 2], 2)).toMatchObject({ ranks: [1] });
    expect(referenceLogprobsAndRanks(config, params, [0, 1], 2)).toEqual({ logprobs: [], ranks: [] });
  });
});

describe('input checks', () => {
  it('rejects a wrong parameter set, bad ids, a mismatched mask and a bad targetStart', () => {
    const missing = copy(smallParams);
    missing.delete('model.norm.weight');
    expect(() => referenceLogits(small, missing, [1])).toThrow('missing parameter model.norm.weight');
    const extra = copy(smallParams);
    extra.set('model.layers.0.self_attn.q_proj.bias', new Float32Array(16));
    expect(() => referenceLogits(small, extra, [1])).toThrow('unexpected parameters for this config: model.layers.0.self_attn.q_proj.bias');
    const short = copy(smallParams);
    short.set('model.norm.weight', new Float32Array(3));
    expect(() => referenceLogits(small, short, [1])).toThrow('parameter model.norm.weight has 3 elements, expected 16');
    expect(() => referenceLogits(small, smallParams, [13])).toThrow('token id 13 is outside [0, 13)');
    expect(() => referenceLogits(small, smallParams, [1, 2], [1])).toThrow('attentionMask has length 1, ids 2');
    expect(() => referenceLogprobsAndRanks(small, smallParams, [1, 2], 0)).toThrow('targetStart must be an integer in [1, 2], got 0');
  });
});
