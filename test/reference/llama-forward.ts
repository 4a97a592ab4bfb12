// Slow, plain reference forward pass of the Llama-family model (HF LlamaForCausalLM semantics) in float64
// with plain loops, written for clarity: the ONNX graphs are tested against it, so it must be obviously right.
import type { ModelConfig } from '../../engine/model/config.js';
import { elementCount, parameterSpecs } from '../../engine/model/params.js';

export type ParamTensors = ReadonlyMap<string, Float32Array | Float64Array>;
type Tensor = Float32Array | Float64Array;
type Vector = number[];

/** The tensor `name`, checked to hold `length` elements. */
function tensor(params: ParamTensors, name: string, length: number): Tensor {
  const t = params.get(name);
  if (t === undefined) throw new Error(`missing parameter ${name}`);
  if (t.length !== length) throw new Error(`parameter ${name} has ${t.length} elements, expected ${length}`);
  return t;
}

function at(values: ArrayLike<number>, i: number): number {
  const v = values[i];
  if (v === undefined) throw new Error(`index ${i} out of range (length ${values.length})`);
  return v;
}

/** Exactly the parameter set of the config: a leftover tensor (say a bias for a bias-free config) is a mistake. */
function checkParameterSet(config: ModelConfig, params: ParamTensors): void {
  const specs = parameterSpecs(config);
  for (const spec of specs) tensor(params, spec.name, elementCount(spec.shape));
  const expected = new Set(specs.map((s) => s.name));
  const extra = [...params.keys()].filter((name) => !expected.has(name));
  if (extra.length > 0) throw new Error(`unexpected parameters for this config: ${extra.join(', ')}`);
}

/** y = W·x (+ b) for an HF Linear weight W stored row-major as [out, in]. */
function linear(x: Vector, weight: Tensor, outDim: number, bias?: Tensor): Vector {
  const inDim = x.length;
  const y: Vector = [];
  for (let o = 0; o < outDim; o++) {
    let sum = bias === undefined ? 0 : at(bias, o);
    for (let i = 0; i < inDim; i++) sum += at(weight, o * inDim + i) * at(x, i);
    y.push(sum);
  }
  return y;
}

/** RMSNorm(v)·w with RMSNorm(v) = v / sqrt(mean(v²) + eps). */
export function rmsNorm(v: Vector, weight: ArrayLike<number>, eps: number): Vector {
  let meanSquare = 0;
  for (const value of v) meanSquare += value * value;
  meanSquare /= v.length;
  const scale = 1 / Math.sqrt(meanSquare + eps);
  return v.map((value, i) => value * scale * at(weight, i));
}

/** rotate_half(x) = concat(−x[half:], x[:half]). */
export function rotateHalf(x: Vector): Vector {
  const half = x.length / 2;
  return [...x.slice(half).map((value) => -value), ...x.slice(0, half)];
}

/**
 * RoPE in HF's "rotate half" layout: inv_freq[i] = theta^(−2i/d) for i < d/2, angle = position·inv_freq[i],
 * cos and sin vectors are those d/2 values repeated twice, and x_rot = x·cos + rotate_half(x)·sin.
 */
export function applyRope(x: Vector, position: number, theta: number): Vector {
  const d = x.length;
  if (d % 2 !== 0) throw new Error(`RoPE needs an even head dimension, got ${d}`);
  const angles: Vector = [];
  for (let i = 0; i < d / 2; i++) angles.push(position * Math.pow(theta, (-2 * i) / d));
  const cos = [...angles, ...angles].map(Math.cos);
  const sin = [...angles, ...angles].map(Math.sin);
  const rotated = rotateHalf(x);
  return x.map((value, i) => value * at(cos, i) + at(rotated, i) * at(sin, i));
}

function silu(z: number): number {
  return z / (1 + Math.exp(-z));
}

export function logSumExp(values: Vector): number {
  const max = Math.max(...values);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Softmax of `scores`; the max is subtracted first so large scores do not overflow. */
function softmax(scores: Vector): Vector {
  const lse = logSumExp(scores);
  return scores.map((s) => Math.exp(s - lse));
}

/** [h0 | h1 | …] → [h0, h1, …]: head h owns dimensions [h·headDim, (h+1)·headDim). */
function splitHeads(v: Vector, headDim: number): Vector[] {
  const heads: Vector[] = [];
  for (let start = 0; start < v.length; start += headDim) heads.push(v.slice(start, start + headDim));
  return heads;
}

function rowAt(rows: Vector[], i: number): Vector {
  const row = rows[i];
  if (row === undefined) throw new Error(`row ${i} out of range (${rows.length} rows)`);
  return row;
}

function dot(a: Vector, b: Vector): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += at(a, i) * at(b, i);
  return sum;
}

function add(a: Vector, b: Vector): Vector {
  return a.map((value, i) => value + at(b, i));
}

/** One decoder layer's self-attention block: its output, before the residual add. */
function selfAttention(config: ModelConfig, params: ParamTensors, layer: number, normed: Vector[], attentionMask: number[]): Vector[] {
  const { hidden_size: hidden, head_dim: headDim, num_attention_heads: heads, num_key_value_heads: kvHeads } = config;
  const p = `model.layers.${layer}.self_attn`;
  const qOut = heads * headDim;
  const kvOut = kvHeads * headDim;
  const wq = tensor(params, `${p}.q_proj.weight`, qOut * hidden);
  const wk = tensor(params, `${p}.k_proj.weight`, kvOut * hidden);
  const wv = tensor(params, `${p}.v_proj.weight`, kvOut * hidden);
  const wo = tensor(params, `${p}.o_proj.weight`, hidden * qOut);
  const bq = config.attention_bias ? tensor(params, `${p}.q_proj.bias`, qOut) : undefined;
  const bk = config.attention_bias ? tensor(params, `${p}.k_proj.bias`, kvOut) : undefined;
  const bv = config.attention_bias ? tensor(params, `${p}.v_proj.bias`, kvOut) : undefined;

  // Per position, per head: the rotated query and key, and the value.
  const q = normed.map((n, t) => splitHeads(linear(n, wq, qOut, bq), headDim).map((head) => applyRope(head, t, config.rope_theta)));
  const k = normed.map((n, t) => splitHeads(linear(n, wk, kvOut, bk), headDim).map((head) => applyRope(head, t, config.rope_theta)));
  const v = normed.map((n) => splitHeads(linear(n, wv, kvOut, bv), headDim));

  const groupSize = heads / kvHeads;
  const outputs: Vector[] = [];
  for (let t = 0; t < normed.length; t++) {
    const concat: Vector = [];
    for (let h = 0; h < heads; h++) {
      const kvHead = Math.floor(h / groupSize);
      const query = at2(q, t, h);
      // Causal (keys s ≤ t) and padding (keys with mask 0 are never attended) masks.
      const allowed: number[] = [];
      for (let s = 0; s <= t; s++) if (at(attentionMask, s) !== 0) allowed.push(s);
      const headOut: Vector = new Array<number>(headDim).fill(0);
      if (allowed.length > 0) {
        const scores = allowed.map((s) => dot(query, at2(k, s, kvHead)) / Math.sqrt(headDim));
        const weights = softmax(scores);
        allowed.forEach((s, j) => {
          const value = at2(v, s, kvHead);
          for (let d = 0; d < headDim; d++) headOut[d] = at(headOut, d) + at(weights, j) * at(value, d);
        });
      }
      concat.push(...headOut);
    }
    outputs.push(linear(concat, wo, hidden));
  }
  return outputs;
}

function at2(rows: Vector[][], i: number, j: number): Vector {
  const row = rows[i];
  const cell = row?.[j];
  if (cell === undefined) throw new Error(`index [${i}][${j}] out of range`);
  return cell;
}

/** SwiGLU MLP: (silu(n·Wgate^T) ⊙ (n·Wup^T))·Wdown^T. */
function mlp(config: ModelConfig, params: ParamTensors, layer: number, normed: Vector): Vector {
  const { hidden_size: hidden, intermediate_size: inter } = config;
  const p = `model.layers.${layer}.mlp`;
  const gate = linear(normed, tensor(params, `${p}.gate_proj.weight`, inter * hidden), inter);
  const up = linear(normed, tensor(params, `${p}.up_proj.weight`, inter * hidden), inter);
  const activated = gate.map((g, i) => silu(g) * at(up, i));
  return linear(activated, tensor(params, `${p}.down_proj.weight`, hidden * inter), hidden);
}

/**
 * logits[t][v] for each position t of `ids` (T × vocab). attentionMask[t] = 0 marks padding keys that no
 * query may attend to (default all 1). Positions are 0..T−1 whatever the mask. A query with no allowed
 * key gets a zero attention output.
 */
export function referenceLogits(config: ModelConfig, params: ParamTensors, ids: number[], attentionMask?: number[]): number[][] {
  const { vocab_size: vocab, hidden_size: hidden, rms_norm_eps: eps } = config;
  checkParameterSet(config, params);
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`token id ${id} is outside [0, ${vocab})`);
  const mask = attentionMask ?? ids.map(() => 1);
  if (mask.length !== ids.length) throw new Error(`attentionMask has length ${mask.length}, ids ${ids.length}`);

  const embed = tensor(params, 'model.embed_tokens.weight', vocab * hidden);
  let x: Vector[] = ids.map((id) => Array.from(embed.subarray(id * hidden, (id + 1) * hidden)));

  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    const p = `model.layers.${layer}`;
    const inputNorm = tensor(params, `${p}.input_layernorm.weight`, hidden);
    const attended = selfAttention(config, params, layer, x.map((v) => rmsNorm(v, inputNorm, eps)), mask);
    x = x.map((v, t) => add(v, rowAt(attended, t)));
    const postNorm = tensor(params, `${p}.post_attention_layernorm.weight`, hidden);
    x = x.map((v) => add(v, mlp(config, params, layer, rmsNorm(v, postNorm, eps))));
  }

  const finalNorm = tensor(params, 'model.norm.weight', hidden);
  const unembed = config.tie_word_embeddings ? embed : tensor(params, 'lm_head.weight', vocab * hidden);
  return x.map((v) => linear(rmsNorm(v, finalNorm, eps), unembed, vocab));
}

/**
 * For t in [targetStart, T): the log-prob of ids[t] given ids[0..t−1] (from the logits at t − 1), and its
 * rank: 1 + the number of vocab entries whose logit is strictly greater than the target's, so ties share
 * the best rank. Returns arrays of length T − targetStart; targetStart must be in [1, T].
 */
export function referenceLogprobsAndRanks(config: ModelConfig, params: ParamTensors, ids: number[], targetStart: number): { logprobs: number[]; ranks: number[] } {
  if (!Number.isInteger(targetStart) || targetStart < 1 || targetStart > ids.length) {
    throw new Error(`targetStart must be an integer in [1, ${ids.length}], got ${targetStart}`);
  }
  const logits = referenceLogits(config, params, ids);
  const logprobs: number[] = [];
  const ranks: number[] = [];
  for (let t = targetStart; t < ids.length; t++) {
    const row = rowAt(logits, t - 1);
    const target = at(row, at(ids, t));
    logprobs.push(target - logSumExp(row));
    ranks.push(1 + row.filter((l) => l > target).length);
  }
  return { logprobs, ranks };
}
