// Memory an engine call needs, estimated from the model config and the batch plan before anything runs,
// so a worker can refuse a plan its memory cannot hold (naming the config fields to change) instead of
// being killed by the kernel; and the model-derived default micro-batch size. The coefficients are fitted
// to measured peaks (getrusage's max RSS of one process per shape, SmolLM2-135M and a 32M-parameter
// model, README "Memory"), not derived: ONNX Runtime decides what lives at once, so each term is a
// structural count (per parameter, per token and layer, per token and vocabulary entry, per attention
// score) times a measured multiplier. engine/memory.test.ts checks them against fresh processes.
import type { ModelConfig } from './model/config.js';
import { adapterSpecs, type LoraConfig } from './model/lora.js';
import { elementCount, parameterCount } from './model/params.js';
import type { FloatDType } from './float-arrays.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** What one micro-batch's activations may take under 'auto', at the model's context or 2,048 tokens. */
export const AUTO_ACTIVATION_BYTES = 8 * GiB;
/** 'auto' picks a power of two between these. */
export const AUTO_MIN_TOKENS = 256;
export const AUTO_MAX_TOKENS = 65_536;

/** A process's own footprint beside the weights: Node, ONNX Runtime's code, the tokenizer and data (measured: 324 MiB). */
export const BASE_BYTES = 320 * MiB;

// Fitted multipliers (README "Memory" gives the fit and its residuals).
/** Floats per trained parameter an update adds: gradient, accumulator, two moments, the new tensors, ONNX Runtime's copies. */
const UPDATE_FLOATS_PER_TRAINED = 6.5;
/**
 * Floats per trained parameter that accumulating over several micro-batches adds: the gradient fed in and
 * the one coming out, the accumulating session's own buffers. Fitted to the steady state of
 * `npm run bench:update` (SmolLM2, 4-16 micro-batches, after a warm-up update), which a single fresh update
 * does not show: the 40M model's single updates put it nearer 2.
 */
const ACCUMULATE_FLOATS_PER_TRAINED = 4;
/** Floats per frozen parameter an update under LoRA adds (the base's gradient path through every adapted projection). */
const UPDATE_FLOATS_PER_FROZEN = 4;
/** Floats per vocabulary entry and token of a gradient micro-batch: logits, their softmax and gradient. */
const UPDATE_VOCAB_FLOATS = 4.2;
/** Attention scores kept per head, key and layer for the backward pass. */
const UPDATE_ATTENTION_FLOATS = 0.8;
/** Scoring's one-layer working set per token, and its vocabulary-sized tensors per scored position. */
const SCORE_LAYER_FLOATS = 1.25;
const SCORE_VOCAB_FLOATS = 3.5;
/** Floats per parameter of the generation sessions, which bake the weights in (serialised, loaded, pre-packed). */
const GENERATE_FLOATS_PER_PARAMETER = 4;

const floatBytes = (dtype: FloatDType): number => (dtype === 'float64' ? 8 : 4);

/**
 * Bytes of a gradient micro-batch's live tensors per padded token, sequences `length` long: per layer the
 * activations kept for the backward pass and one attention row per head, plus the vocabulary-sized logits
 * and their gradient.
 */
export function updateActivationBytesPerToken(config: ModelConfig, length: number, dtype: FloatDType = 'float32'): number {
  const { hidden_size: h, intermediate_size: i, num_hidden_layers: layers, num_attention_heads: heads, vocab_size: vocab } = config;
  return floatBytes(dtype) * (layers * (2 * h + i + UPDATE_ATTENTION_FLOATS * heads * length) + UPDATE_VOCAB_FLOATS * vocab);
}

/**
 * The default micro-batch: the largest power of two whose activations at the model's full context (or
 * 2,048 tokens, whichever is less) stay within AUTO_ACTIVATION_BYTES. A function of the model alone, so
 * every worker packs a run's batches the same way whatever its memory; a worker checks its own budget
 * separately (checkRunMemory in activities/memory-budget.ts). SmolLM2-135M gets 2,048.
 */
export function autoMicroBatchTokens(config: ModelConfig): number {
  const length = Math.min(config.max_position_embeddings, 2048);
  let tokens = AUTO_MAX_TOKENS;
  while (tokens > AUTO_MIN_TOKENS && tokens * updateActivationBytesPerToken(config, Math.min(length, tokens)) > AUTO_ACTIVATION_BYTES) tokens /= 2;
  return tokens;
}

/** A run config's setting, resolved: 'auto' by the model. */
export function resolveMicroBatchTokens(setting: number | 'auto', config: ModelConfig): number {
  return setting === 'auto' ? autoMicroBatchTokens(config) : setting;
}

/** The parameters an update trains: every one, or the LoRA adapters. */
export function trainedParameterCount(config: ModelConfig, lora?: LoraConfig): number {
  return lora ? adapterSpecs(config, lora).reduce((sum, spec) => sum + elementCount(spec.shape), 0) : parameterCount(config);
}

export interface MemoryEstimate {
  /** The estimated peak of the process, in bytes. */
  bytes: number;
  /** What it is made of, for a refusal message and the benchmarks. */
  parts: Record<string, number>;
}

const estimate = (parts: Record<string, number>): MemoryEstimate => ({ bytes: Object.values(parts).reduce((a, b) => a + b, 0), parts });

export interface ResidentPlan {
  /** Parameters the run trains (trainedParameterCount). */
  trainedParameters: number;
  /** LoRA: the trained parameters are adapters beside a frozen base. */
  lora?: boolean;
  /** A process that has not trained yet: no AdamW moments, and the reference is the policy itself. Default false (a worker mid-run). */
  fresh?: boolean;
  dtype?: FloatDType;
}

/** What a policy engine holds between calls: the model (and frozen base), the reference policy's trained tensors, two AdamW moments. */
function resident(config: ModelConfig, plan: ResidentPlan): Record<string, number> {
  const bytes = floatBytes(plan.dtype ?? 'float32');
  const weights = bytes * (parameterCount(config) + (plan.lora ? plan.trainedParameters : 0));
  if (plan.fresh) return { process: BASE_BYTES, weights };
  return { process: BASE_BYTES, weights, reference: bytes * plan.trainedParameters, moments: 2 * bytes * plan.trainedParameters };
}

export interface UpdatePlan extends ResidentPlan {
  microBatchTokens: number;
  /** The batch may take more than one micro-batch, so gradients are accumulated between sessions. Default true. */
  accumulates?: boolean;
  /** The longest sequence of a micro-batch (its attention rows are this long). */
  longest: number;
}

/** Peak of an update: the resident state, the gradient and optimizer tensors, one micro-batch's activations. */
export function estimateUpdateBytes(config: ModelConfig, plan: UpdatePlan): MemoryEstimate {
  const dtype = plan.dtype ?? 'float32';
  const { moments: _, ...held } = resident(config, plan);
  return estimate({
    ...held,
    // The two moments are part of the fitted per-parameter figure.
    update: floatBytes(dtype) * (UPDATE_FLOATS_PER_TRAINED * plan.trainedParameters + (plan.lora ? UPDATE_FLOATS_PER_FROZEN * parameterCount(config) : 0)),
    ...(plan.accumulates === false ? {} : { accumulation: floatBytes(dtype) * ACCUMULATE_FLOATS_PER_TRAINED * plan.trainedParameters }),
    activations: plan.microBatchTokens * updateActivationBytesPerToken(config, Math.min(plan.longest, plan.microBatchTokens), dtype),
  });
}

export interface ScorePlan extends ResidentPlan {
  /** Tokens of one scoring call (its micro-batch). */
  tokens: number;
  longest: number;
  /** Positions whose log-probabilities it returns; at most `tokens` (the default). */
  targets?: number;
  /** Tokens of the shared prefixes the call holds keys and values of (engine/scoring.ts); 0 (the default) when none. */
  prefixTokens?: number;
}

/**
 * Peak of a scoring call: the resident state, one layer's working set over its tokens, the logits at its
 * target positions, and with shared prefixes their keys and values (counted exactly, not fitted) plus a
 * micro-batch's copy of them.
 */
export function estimateScoreBytes(config: ModelConfig, plan: ScorePlan): MemoryEstimate {
  const bytes = floatBytes(plan.dtype ?? 'float32');
  const { hidden_size: h, intermediate_size: i, num_attention_heads: heads, vocab_size: vocab, num_hidden_layers: layers, num_key_value_heads: kv, head_dim: d } = config;
  const longest = Math.min(plan.longest, plan.tokens);
  const prefixes = plan.prefixTokens ? bytes * 2 * layers * kv * d * (plan.prefixTokens + plan.tokens) : 0;
  return estimate({
    ...resident(config, plan),
    activations: bytes * SCORE_LAYER_FLOATS * plan.tokens * (4 * h + 2 * i + heads * longest) + bytes * SCORE_VOCAB_FLOATS * Math.min(plan.targets ?? plan.tokens, plan.tokens) * vocab + prefixes,
  });
}

export interface GeneratePlan extends ResidentPlan {
  /** Sequences sampled together. */
  rows: number;
  /** Prompt plus new tokens: the key/value cache's slots per row. */
  length: number;
}

/**
 * Peak of a generation call: the resident state, the prefill and decode sessions with the weights baked in
 * (and pre-packed by ONNX Runtime), the key/value cache of every row's slots, the rows' logits.
 */
export function estimateGenerateBytes(config: ModelConfig, plan: GeneratePlan): MemoryEstimate {
  const bytes = floatBytes(plan.dtype ?? 'float32');
  const { num_hidden_layers: layers, num_key_value_heads: kv, head_dim: d, vocab_size: vocab } = config;
  return estimate({
    ...resident(config, plan),
    sessions: bytes * GENERATE_FLOATS_PER_PARAMETER * parameterCount(config),
    cache: bytes * 2 * layers * kv * d * plan.rows * plan.length,
    logits: bytes * 2 * plan.rows * vocab,
  });
}

export const formatGiB = (bytes: number): string => `${(bytes / GiB).toFixed(1)} GiB`;
