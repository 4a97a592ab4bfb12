// Every parameter of the model in Hugging Face names and shapes (so weights interchange with
// transformers checkpoints), and a deterministic initialisation keyed by (seed, name, element index).
import { constants } from 'node:buffer';
import { totalmem } from 'node:os';
import { uniformStream } from '../../dro/random.js';
import type { ModelConfig } from './config.js';

const BUFFER_MAX = constants.MAX_LENGTH;

export interface ParamSpec {
  name: string;
  shape: number[];
}

/** Every parameter in HF Llama names and HF shapes (Linear weights are [out, in]), in a fixed order. */
export function parameterSpecs(config: ModelConfig): ParamSpec[] {
  const { vocab_size: vocab, hidden_size: hidden, intermediate_size: inter, head_dim: headDim } = config;
  const qOut = config.num_attention_heads * headDim;
  const kvOut = config.num_key_value_heads * headDim;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden] }];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [hidden] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [qOut, hidden] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvOut, hidden] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvOut, hidden] },
    );
    if (config.attention_bias) {
      specs.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [qOut] },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kvOut] },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kvOut] },
      );
    }
    specs.push(
      { name: `${p}.self_attn.o_proj.weight`, shape: [hidden, qOut] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [hidden] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [inter, hidden] },
      { name: `${p}.mlp.up_proj.weight`, shape: [inter, hidden] },
      { name: `${p}.mlp.down_proj.weight`, shape: [hidden, inter] },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [hidden] });
  if (!config.tie_word_embeddings) specs.push({ name: 'lm_head.weight', shape: [vocab, hidden] });
  return specs;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function parameterCount(config: ModelConfig): number {
  return parameterSpecs(config).reduce((sum, spec) => sum + elementCount(spec.shape), 0);
}

/** Bytes per parameter to hold a float32 model: our copy and ONNX Runtime's. */
export const LOADING_BYTES_PER_PARAMETER = 8;

const GiB = 1024 ** 3;

/**
 * Refuses, before anything is allocated, a model this machine cannot hold: a tensor larger than one
 * buffer may be, or more parameters than its memory loads. The message names the field that makes
 * the model this large. Counted per layer, so a million layers cost nothing to check. What training
 * needs is the worker's concern (engine/memory.ts, checked against its budget when a run loads).
 */
export function assertModelFits(config: ModelConfig, source: string, memoryBytes = totalmem()): void {
  const none = { ...config, num_hidden_layers: 0 };
  const one = { ...config, num_hidden_layers: 1 };
  const outside = parameterSpecs(none);
  const perLayer = parameterSpecs(one).filter((s) => s.name.startsWith('model.layers.0.'));
  for (const spec of [...outside, ...perLayer]) {
    const bytes = elementCount(spec.shape) * 4;
    if (bytes > BUFFER_MAX) {
      const field = spec.name.includes('embed') || spec.name.includes('lm_head') ? (config.vocab_size > config.hidden_size ? 'vocab_size' : 'hidden_size') : spec.name.includes('mlp') ? 'intermediate_size' : 'hidden_size';
      throw new ModelTooLargeError(`${source}: ${field} makes tensor ${spec.name.replace('.0.', '.N.')} [${spec.shape.join(', ')}] ${(bytes / GiB).toFixed(1)} GiB, more than one buffer holds (${(BUFFER_MAX / GiB).toFixed(1)} GiB)`);
    }
  }
  const layerCount = perLayer.reduce((a, s) => a + elementCount(s.shape), 0);
  const outsideCount = outside.reduce((a, s) => a + elementCount(s.shape), 0);
  const total = outsideCount + config.num_hidden_layers * layerCount;
  const need = total * LOADING_BYTES_PER_PARAMETER;
  if (need > memoryBytes) {
    const layersDominate = config.num_hidden_layers * layerCount >= outsideCount;
    const field = layersDominate ? (config.num_hidden_layers > 64 ? 'num_hidden_layers' : config.intermediate_size > 4 * config.hidden_size ? 'intermediate_size' : 'hidden_size') : 'vocab_size';
    throw new ModelTooLargeError(
      `${source}: ${field} = ${config[field]} gives ${total.toExponential(2)} parameters; loading them in float32 needs about ${(need / GiB).toFixed(1)} GiB, more than this machine's ${(memoryBytes / GiB).toFixed(1)} GiB`,
    );
  }
}

export class ModelTooLargeError extends Error {
  override readonly name = 'ModelTooLargeError';
}

// Per-element draws come from dro/random.ts's keyed stream: the tensor's key (seed, name) is hashed once,
// each element only hashes its index, so tens of millions of weights initialise in about a second.
type TensorKey = (index: number, lane?: number) => number;

function tensorKey(seed: number, name: string): TensorKey {
  return uniformStream([seed, name, 'init']);
}

/**
 * Box–Muller turns one pair of uniforms into two independent normals; elements 2j and 2j + 1 share the
 * pair keyed by j (cosine and sine branch), which halves the hashing. 1 − u1 lies in (0, 1], so the
 * logarithm is finite.
 */
function normalAt(key: TensorKey, index: number): number {
  const pair = Math.floor(index / 2);
  const radius = Math.sqrt(-2 * Math.log(1 - key(pair, 1)));
  const angle = 2 * Math.PI * key(pair, 2);
  return radius * (index % 2 === 0 ? Math.cos(angle) : Math.sin(angle));
}

/** The standard-normal draw behind element `index` of tensor `name`: a pure function of its arguments. */
export function standardNormalAt(seed: number, name: string, index: number): number {
  checkSeed(seed);
  if (!Number.isSafeInteger(index) || index < 0 || index >= 4294967296) throw new Error(`index must be an integer in [0, 2^32), got ${index}`);
  return normalAt(tensorKey(seed, name), index);
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be a safe integer, got ${seed}`);
}

/** As HF's LlamaPreTrainedModel._init_weights: Linear and Embedding weights normal, RMSNorm weights one, biases zero. */
function initKind(name: string): 'normal' | 'one' | 'zero' {
  if (name.endsWith('.bias')) return 'zero';
  if (name.endsWith('norm.weight')) return 'one';
  return 'normal';
}

/**
 * Deterministic init from a seed: Linear and embedding weights ~ N(0, initializer_range²) (Box–Muller on
 * per-element uniforms keyed by (seed, name, index)), norm weights 1, biases 0. Each element depends only
 * on (seed, name, index), so the result does not depend on iteration order, on which other tensors exist,
 * or on the number of layers.
 */
export function initParameters(config: ModelConfig, seed: number): Map<string, Float32Array> {
  checkSeed(seed);
  assertModelFits(config, 'model config');
  const params = new Map<string, Float32Array>();
  for (const spec of parameterSpecs(config)) {
    const data = new Float32Array(elementCount(spec.shape));
    const kind = initKind(spec.name);
    if (kind === 'one') data.fill(1);
    if (kind === 'normal') {
      const key = tensorKey(seed, spec.name);
      const std = config.initializer_range;
      // The pairwise loop is normalAt unrolled: each pair of uniforms is drawn once, not twice.
      for (let i = 0; i < data.length; i += 2) {
        const pair = i / 2;
        const radius = Math.sqrt(-2 * Math.log(1 - key(pair, 1)));
        const angle = 2 * Math.PI * key(pair, 2);
        data[i] = std * (radius * Math.cos(angle));
        if (i + 1 < data.length) data[i + 1] = std * (radius * Math.sin(angle));
      }
    }
    params.set(spec.name, data);
  }
  return params;
}
