// The decoder-only Llama-family forward pass as an ONNX graph (RMSNorm, rotary embeddings in the Hugging
// Face "rotate half" convention, grouped-query attention with causal and padding masks, SwiGLU MLP,
// optional QKV bias, optional tied embeddings), plus the per-token log-prob and rank outputs R3 needs.
// Attention keeps the query heads grouped by their key/value head ([B, kvHeads, group, T, d]) so grouped-
// query attention is a broadcast MatMul, never a copy of the keys and values.
import type { DType, Graph, Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import type { GraphAdapter } from './lora.js';
import { parameterSpecs } from './params.js';
import { rotaryInverseFrequencies } from './rope.js';

/** A large negative bias for masked attention scores: exp() of it is exactly 0 in float32 and float64. */
const MASKED = -1e9;

export interface ModelInputs {
  /** Token ids [B, T]. */
  ids: Tensor;
  /** 1 for real tokens, 0 for padding [B, T] (float, the model dtype). Padding keys are never attended. Unused with a fixed cache (decode), whose own mask covers the slots. */
  keyMask?: Tensor;
  /** Rotary position of each token [B, T] (int64); 0..n−1 over the real tokens of a row. */
  positions: Tensor;
}

/** Declares the graph inputs of the model's token batch, with symbolic batch and sequence sizes. */
export function declareModelInputs(g: Graph, dtype: DType): ModelInputs {
  return {
    ids: g.input('ids', 'int64', ['batch', 'seq']),
    keyMask: g.input('key_mask', dtype, ['batch', 'seq']),
    positions: g.input('positions', 'int64', ['batch', 'seq']),
  };
}

/**
 * The parameters as graph inputs (one session serves every parameter version: training, scoring), or,
 * given `values`, baked in as initializers, which ONNX Runtime pre-packs once: about 1.5× faster for
 * small-batch decoding, at the price of a new session whenever the weights change.
 */
export function declareParameters(g: Graph, config: ModelConfig, dtype: DType, values?: ReadonlyMap<string, Float32Array | Float64Array>): Map<string, Tensor> {
  const params = new Map<string, Tensor>();
  for (const spec of parameterSpecs(config)) {
    const value = values?.get(spec.name);
    if (values && !value) throw new Error(`model parameter ${spec.name} is missing`);
    params.set(spec.name, value ? g.initializer(spec.name, dtype, spec.shape, value) : g.input(spec.name, dtype, spec.shape));
  }
  return params;
}

function param(params: Map<string, Tensor>, name: string): Tensor {
  const t = params.get(name);
  if (!t) throw new Error(`model parameter ${name} is missing`);
  return t;
}

function rmsNorm(g: Graph, x: Tensor, weight: Tensor, eps: number): Tensor {
  const meanSquare = g.reduceMean(g.mul(x, x), [-1], true);
  return g.mul(g.mul(x, g.pow(g.add(meanSquare, eps), -0.5)), weight);
}

/**
 * x · Wᵀ (+ b) for a Hugging Face Linear weight W [out, in]; with a LoRA adapter, plus scale·(x·Aᵀ)·Bᵀ
 * through the rank-r bottleneck (never the [out, in] product B·A, which would also make training compute
 * a full-size gradient of it).
 */
function linear(g: Graph, x: Tensor, weight: Tensor, bias?: Tensor, adapter?: GraphAdapter): Tensor {
  let y = g.matmul(x, g.transpose(weight, [1, 0]));
  if (adapter) y = g.add(y, g.mul(g.matmul(g.matmul(x, g.transpose(adapter.a, [1, 0])), g.transpose(adapter.b, [1, 0])), adapter.scale));
  return bias ? g.add(y, bias) : y;
}

/** cos and sin of the rotary angles, [B, 1, 1, T, d], in the layout of grouped attention heads. */
function rotaryTables(g: Graph, positions: Tensor, config: ModelConfig, dtype: DType): { cos: Tensor; sin: Tensor } {
  const half = config.head_dim / 2;
  const invFreq = rotaryInverseFrequencies(config);
  const angles = g.mul(g.unsqueeze(g.cast(positions, dtype), [-1]), g.constant(invFreq, dtype, [half]));
  const full = g.unsqueeze(g.concat([angles, angles], -1), [1, 2]);
  return { cos: unaryNode(g, 'Cos', full), sin: unaryNode(g, 'Sin', full) };
}

function unaryNode(g: Graph, opType: string, x: Tensor): Tensor {
  return g.node(opType, [x], [{ dtype: x.dtype, shape: [...x.shape] }])[0]!;
}

function applyRotary(g: Graph, x: Tensor, cos: Tensor, sin: Tensor, headDim: number): Tensor {
  const half = headDim / 2;
  const rotated = g.concat([g.neg(g.slice(x, -1, half, headDim)), g.slice(x, -1, 0, half)], -1);
  return g.add(g.mul(x, cos), g.mul(rotated, sin));
}

/**
 * silu(gate) · up, with its gradient written out: ∂/∂gate = grad · up · (s + silu·(1 − s)) for s =
 * sigmoid(gate), ∂/∂up = grad · silu. Six passes over the [B, T, intermediate] tensors where the
 * product, product and sigmoid rules composed took eight, for the widest activations of the layer.
 */
function swiGlu(g: Graph, gate: Tensor, up: Tensor): Tensor {
  const s = g.sigmoid(gate);
  const silu = g.mul(gate, s);
  return g.withGradient(g.mul(silu, up), [gate, up], (g, grad) => {
    const dSilu = g.mul(grad, up);
    return [g.mul(dSilu, g.add(s, g.mul(silu, g.sub(1, s)))), g.mul(grad, silu)];
  });
}

/** Additive attention bias [B, 1, 1, T, T]: 0 where query t may see key s (s ≤ t and s is real). */
function attentionBias(g: Graph, keyMask: Tensor, seqLen: Tensor, dtype: DType): Tensor {
  // A [T, T] lower-triangular matrix of ones, built at run time from the sequence length.
  const square = g.concat([seqLen, seqLen], 0);
  const ones = g.node('Expand', [g.scalar(1, dtype), square], [{ dtype, shape: ['seq', 'seq'] }])[0]!;
  const causal = g.node('Trilu', [ones], [{ dtype, shape: ['seq', 'seq'] }], { upper: 0 })[0]!;
  const keys = g.unsqueeze(keyMask, [1, 2, 3]);
  const allowed = g.mul(causal, keys);
  return g.mul(g.sub(1, allowed), MASKED);
}

/**
 * Causal attention splits its queries into this many chunks, and chunk c (queries [b_c, b_c+1)) scores
 * only keys [0, b_c+1): the keys after a chunk are masked for all its queries. With 4 chunks the scores,
 * their softmax and its gradient (the attention-sized tensors, [B, heads, T, T], over a quarter of a
 * 512-token training step's kernel time) cover 10/16 of the square. The bounds are computed from the
 * run-time length, so one graph serves every T (a chunk of a T below 4 may be empty).
 */
const CAUSAL_CHUNKS = 4;

/** The chunk bounds b_0 = 0 ≤ b_1 ≤ … ≤ b_C = T (seqLen) as int64 tensors of shape [1]; b_c = ⌊c·T/C⌋. */
function causalChunkBounds(g: Graph, seqLen: Tensor): Tensor[] {
  return Array.from({ length: CAUSAL_CHUNKS + 1 }, (_, c) => {
    if (c === 0) return g.constant([0], 'int64');
    if (c === CAUSAL_CHUNKS) return seqLen;
    return g.div(g.mul(seqLen, g.constant([c], 'int64')), g.constant([CAUSAL_CHUNKS], 'int64'));
  });
}

/**
 * Causal self-attention of q [B, kvHeads, group, T, d] over k, v [B, kvHeads, 1, T, d] with the additive
 * bias [B, 1, 1, T, T], chunk by chunk (CAUSAL_CHUNKS). Each softmax row drops only keys whose bias is
 * MASKED, whose exp() is exactly 0, so the result is the unchunked one up to the order of float sums.
 */
function chunkedCausalAttention(g: Graph, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number, bounds: Tensor[]): Tensor {
  const zero = bounds[0]!;
  const chunks: Tensor[] = [];
  for (let c = 0; c < CAUSAL_CHUNKS; c++) {
    const [from, to] = [bounds[c]!, bounds[c + 1]!];
    const rows = `seq.chunk${c}`;
    const seen = `seq.upto${c}`;
    const qc = g.sliceRange(q, 3, from, to, rows);
    const kc = g.sliceRange(k, 3, zero, to, seen);
    const vc = g.sliceRange(v, 3, zero, to, seen);
    const shape = [...bias.shape.slice(0, 3), rows, seen];
    const bc = g.node('Slice', [bias, g.concat([from, zero], 0), g.concat([to, to], 0), g.constant([3, 4], 'int64')], [{ dtype: bias.dtype, shape }])[0]!;
    const scores = g.add(g.mul(g.matmul(qc, g.transpose(kc, [0, 1, 2, 4, 3])), scale), bc);
    chunks.push(g.matmul(g.softmax(scores, -1), vc));
  }
  // Declared with q's own length, which the pieces add up to, so the caller's reshape keeps its name.
  return g.node('Concat', chunks, [{ dtype: q.dtype, shape: [...q.shape] }], { axis: 3 }, { axis: 3 })[0]!;
}

/** Keys and values of one layer in the grouped layout [B, kvHeads, 1, T, d]. */
export interface LayerCache {
  key: Tensor;
  value: Tensor;
}

export interface ForwardResult {
  /** Logits [B, T, vocab] ([B, 1, vocab] with lastPositionOnly). */
  logits: Tensor;
  /** Each layer's keys and values of these tokens (with a fixed cache: of the one new token). */
  present: LayerCache[];
}

/**
 * Decode attention over a cache the caller keeps in place: per layer one key and one value buffer
 * [B, kvHeads, 1, maxLength, d] with `mask` [B, maxLength] (1 = a written slot). The new token's key and
 * value are attended beside the buffer, not appended to it (appending would copy the whole cache every
 * step), and returned as `present` [B, kvHeads, 1, 1, d] for the caller to write into its slot.
 */
export interface FixedCacheAttention {
  cache: { key: Tensor; value: Tensor }[];
  mask: Tensor;
}

export interface ForwardOptions {
  /** Decode (T = 1) against a cache the caller updates in place. */
  fixedCache?: FixedCacheAttention;
  /**
   * Keys and values of each row's prefix, already run ([B, kvHeads, 1, P, d] per layer; `mask` [B, P]: 1
   * for a real slot, a shorter prefix right-padded): each of the T tokens attends to its row's prefix,
   * then causally to its own row. The tokens' positions continue the prefix's (the caller feeds them).
   */
  prefix?: { cache: LayerCache[]; mask: Tensor };
  /** Output only the logits of the last position: sampling reads nothing else. */
  lastPositionOnly?: boolean;
  /**
   * Output the logits of every position but the last, which predicts no token of the row: training
   * scores each position's next token, and dropping the position before the output projection spares a
   * copy of the vocabulary-sized logits (and its gradient's padding) that slicing them after would cost.
   */
  allButLastPosition?: boolean;
  /**
   * Output only the logits at these positions [B, K] (int64; per row, any K positions of that row):
   * scoring reads only the positions that predict its targets, and the output projection and the
   * vocabulary-sized tensors after it cost per position.
   */
  outputPositions?: Tensor;
  /** LoRA adapters by the name of the weight they adapt (e.g. model.layers.0.self_attn.q_proj.weight). */
  adapters?: ReadonlyMap<string, GraphAdapter>;
}

/**
 * The forward pass. Without a fixed cache, the T tokens attend causally among themselves (padding keys
 * masked by `keyMask`). With one (T = 1), the new token attends to the cache's written slots and itself.
 */
export function transformerForward(g: Graph, config: ModelConfig, params: Map<string, Tensor>, inputs: ModelInputs, options: ForwardOptions = {}): ForwardResult {
  const dtype = param(params, 'model.embed_tokens.weight').dtype;
  const d = config.head_dim;
  const kvHeads = config.num_key_value_heads;
  const group = config.num_attention_heads / kvHeads;
  const { cos, sin } = rotaryTables(g, inputs.positions, config, dtype);
  const keyMask = (): Tensor => {
    if (!inputs.keyMask) throw new Error('transformerForward: key_mask is needed without a fixed cache');
    return inputs.keyMask;
  };
  // Masked slots of a fixed cache get the same large negative bias as masked keys: exp() of it is 0.
  const fixedBias = options.fixedCache ? g.mul(g.sub(1, g.unsqueeze(options.fixedCache.mask, [1, 2, 3])), MASKED) : undefined;
  // T at run time, for the causal mask and the attention chunks.
  const seqLen = options.fixedCache ? undefined : g.sizeOf(inputs.ids, 1);
  const bias = seqLen ? attentionBias(g, keyMask(), seqLen, dtype) : undefined;
  const prefixBias = options.prefix ? g.mul(g.sub(1, g.unsqueeze(options.prefix.mask, [1, 2, 3])), MASKED) : undefined;
  const scale = 1 / Math.sqrt(d);
  const chunkBounds = seqLen && !options.prefix ? causalChunkBounds(g, seqLen) : undefined;
  const present: LayerCache[] = [];
  const seq = inputs.ids.shape[1]!;

  let x = g.gather(param(params, 'model.embed_tokens.weight'), inputs.ids);
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    const p = (name: string): Tensor => param(params, `model.layers.${layer}.${name}`);
    const optional = (name: string): Tensor | undefined => (config.attention_bias ? p(name) : undefined);
    const project = (x: Tensor, module: string, bias?: Tensor): Tensor => linear(g, x, p(`${module}.weight`), bias, options.adapters?.get(`model.layers.${layer}.${module}.weight`));
    const n = rmsNorm(g, x, p('input_layernorm.weight'), config.rms_norm_eps);
    // [B, T, heads·d] → [B, kvHeads, group, T, d]; keys and values have group 1 and broadcast.
    const heads = (t: Tensor, perGroup: number): Tensor => g.transpose(g.reshape(t, ['batch', seq, kvHeads, perGroup, d]), [0, 2, 3, 1, 4]);
    const q = applyRotary(g, heads(project(n, 'self_attn.q_proj', optional('self_attn.q_proj.bias')), group), cos, sin, d);
    const k = applyRotary(g, heads(project(n, 'self_attn.k_proj', optional('self_attn.k_proj.bias')), 1), cos, sin, d);
    const v = heads(project(n, 'self_attn.v_proj', optional('self_attn.v_proj.bias')), 1);
    present.push({ key: k, value: v });
    let context: Tensor;
    const fixed = options.fixedCache;
    if (fixed) {
      const { key: cacheKey, value: cacheValue } = fixed.cache[layer]!;
      // Softmax over [cached slots, new token] written out, so the scores are never concatenated with
      // symbolic sizes: m is the row maximum, e the shifted exponentials.
      const cached = g.add(g.mul(g.matmul(q, g.transpose(cacheKey, [0, 1, 2, 4, 3])), scale), fixedBias!);
      const own = g.mul(g.matmul(q, g.transpose(k, [0, 1, 2, 4, 3])), scale);
      const m = g.max(g.reduceMax(cached, [-1], true), own);
      const eCached = g.exp(g.sub(cached, m));
      const eOwn = g.exp(g.sub(own, m));
      context = g.div(g.add(g.matmul(eCached, cacheValue), g.mul(eOwn, v)), g.add(g.reduceSum(eCached, [-1], true), eOwn));
    } else if (options.prefix) {
      // One softmax over [prefix keys, own keys], written out as for the fixed cache.
      const { key: prefixKey, value: prefixValue } = options.prefix.cache[layer]!;
      const shared = g.add(g.mul(g.matmul(q, g.transpose(prefixKey, [0, 1, 2, 4, 3])), scale), prefixBias!);
      const own = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 1, 2, 4, 3])), scale), bias!);
      const m = g.max(g.reduceMax(shared, [-1], true), g.reduceMax(own, [-1], true));
      const eShared = g.exp(g.sub(shared, m));
      const eOwn = g.exp(g.sub(own, m));
      context = g.div(g.add(g.matmul(eShared, prefixValue), g.matmul(eOwn, v)), g.add(g.reduceSum(eShared, [-1], true), g.reduceSum(eOwn, [-1], true)));
    } else {
      context = chunkedCausalAttention(g, q, k, v, bias!, scale, chunkBounds!);
    }
    const merged = g.reshape(g.transpose(context, [0, 3, 1, 2, 4]), ['batch', seq, config.num_attention_heads * d]);
    x = g.add(x, project(merged, 'self_attn.o_proj'));

    const n2 = rmsNorm(g, x, p('post_attention_layernorm.weight'), config.rms_norm_eps);
    x = g.add(x, project(swiGlu(g, project(n2, 'mlp.gate_proj'), project(n2, 'mlp.up_proj')), 'mlp.down_proj'));
  }
  // Sampling reads only the last position's logits; the output projection is the largest GEMM of a
  // small model's prefill (a fifth of SmolLM2-135M's), so the other positions skip it.
  if (options.lastPositionOnly) x = g.slice(x, 1, -1, Infinity);
  if (options.allButLastPosition) x = g.slice(x, 1, 0, -1);
  if (options.outputPositions) {
    x = g.node('GatherND', [x, g.unsqueeze(options.outputPositions, [-1])], [{ dtype, shape: ['batch', options.outputPositions.shape[1]!, config.hidden_size] }], { batch_dims: 1 })[0]!;
  }
  const final = rmsNorm(g, x, param(params, 'model.norm.weight'), config.rms_norm_eps);
  const head = config.tie_word_embeddings ? param(params, 'model.embed_tokens.weight') : param(params, 'lm_head.weight');
  return { logits: linear(g, final, head), present };
}

/** Logits [B, T, vocab] of the model for the token batch. */
export function transformerLogits(g: Graph, config: ModelConfig, params: Map<string, Tensor>, inputs: ModelInputs, options: ForwardOptions = {}): Tensor {
  return transformerForward(g, config, params, inputs, options).logits;
}

export interface TokenScores {
  /** log π(target) at each scored position [B, K]. */
  logprobs: Tensor;
  /** Logits [B, K, vocab] at the scored positions. */
  logits: Tensor;
  /** The target ids [B, K]. */
  targets: Tensor;
}

/** Log-prob of each target under logits [B, K, vocab] (targets [B, K]). */
export function targetLogprobs(g: Graph, logits: Tensor, targets: Tensor): TokenScores {
  const logp = g.logSoftmax(logits, -1);
  const index = g.unsqueeze(targets, [-1]);
  const picked = g.reduceSum(g.gatherElements(logp, index, -1), [-1]);
  // ∂ log p(target) / ∂ logits = onehot(target) − softmax, scaled by the upstream gradient: the softmax
  // (exp of the kept log-softmax) times −grad, then grad added at the target. Three passes over the
  // vocabulary-sized tensor where the composed rules took six (a zero fill, a scatter into it, and the
  // log-softmax rule's sum, product and difference); each value equals the composed rules' (up to the
  // sign of a zero), as a row's sum of the scattered gradient is its one entry exactly.
  const logprobs = g.withGradient(picked, [logits], (g, grad) => {
    const upstream = g.unsqueeze(grad, [-1]);
    return [g.addAtElements(g.mul(g.exp(logp), g.neg(upstream)), index, upstream, -1)];
  });
  return { logprobs, logits, targets };
}

/**
 * Log-prob of each next token under the model: entry t is for ids[t+1] given ids[0..t]. `logits` are
 * those of every position but the last (ForwardOptions.allButLastPosition).
 */
export function nextTokenLogprobs(g: Graph, logits: Tensor, ids: Tensor): TokenScores {
  return targetLogprobs(g, logits, g.slice(ids, 1, 1, Infinity));
}

/** Rank of each target among the vocabulary: 1 + the number of tokens with a strictly greater logit. */
export function targetRanks(g: Graph, scores: TokenScores): Tensor {
  const targetLogit = g.gatherElements(scores.logits, g.unsqueeze(scores.targets, [-1]), -1);
  const above = g.cast(g.greater(scores.logits, targetLogit), 'int64');
  return g.add(g.reduceSum(above, [-1]), g.constant(1, 'int64'));
}
