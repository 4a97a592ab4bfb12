// The training graphs: per micro-batch, the GRPO loss exactly as dro/grpo.ts defines it (or the SFT loss)
// and its gradients by engine/onnx/autodiff.ts, accumulated across micro-batches; then one optimizer graph
// that clips the accumulated gradient by its global norm and applies a decoupled-weight-decay AdamW step.
// With LoRA only the adapters are differentiated and updated; the frozen base weights stay plain inputs
// (see declareLossModel).
import type { Aggregation } from '../../dro/grpo.js';
import { gradients } from '../onnx/autodiff.js';
import { Graph, type DType, type Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import { declareAdapters, type LoraConfig } from './lora.js';
import type { ParamSpec } from './params.js';
import { declareModelInputs, declareParameters, nextTokenLogprobs, targetLogprobs, targetRanks, transformerForward, transformerLogits } from './transformer.js';

/** What a micro-batch's gradient graph computes: the loss and its float type. */
export interface LossGraphOptions {
  dtype: DType;
  loss: 'grpo' | 'sft';
  epsilonLow: number;
  epsilonHigh: number;
  klBeta: number;
  aggregation: Aggregation;
}

/** What the optimizer graph applies to the accumulated gradients: clipping and AdamW. */
export interface OptimizerGraphOptions {
  dtype: DType;
  /** Global gradient-norm clip; 0 = off. */
  maxGradNorm: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

/** Names of the graphs' extra inputs and outputs, shared with the engine that feeds them. */
export const TRAIN_IO = {
  completionMask: 'completion_mask',
  advantages: 'advantages',
  oldLogprobs: 'old_logprobs',
  refLogprobs: 'ref_logprobs',
  /** The whole batch's normaliser, so the micro-batches' losses and gradients add up to the batch's. */
  lossDivisor: 'loss_divisor',
  learningRate: 'learning_rate',
  biasCorrection1: 'bias_correction1',
  biasCorrection2: 'bias_correction2',
  loss: 'loss',
  gradNorm: 'grad_norm',
  grad: (name: string) => `grad.${name}`,
  /** The gradient accumulated over the micro-batches before this one. */
  gradIn: (name: string) => `grad_in.${name}`,
  m: (name: string) => `adam_m.${name}`,
  v: (name: string) => `adam_v.${name}`,
  newParam: (name: string) => `new.${name}`,
  newM: (name: string) => `new.adam_m.${name}`,
  newV: (name: string) => `new.adam_v.${name}`,
} as const;

/** Parameters that get weight decay: matrices only, not norms or biases (the usual AdamW practice). */
export const decays = (shape: readonly unknown[]): boolean => shape.length >= 2;

function grpoLoss(g: Graph, o: LossGraphOptions, newLogp: Tensor, mask: Tensor, advantages: Tensor, oldLogp: Tensor, refLogp: Tensor, divisor: Tensor): Tensor {
  const a = g.unsqueeze(advantages, [1]);
  const ratio = g.exp(g.sub(newLogp, oldLogp));
  const surrogate = g.min(g.mul(ratio, a), g.mul(g.clip(ratio, 1 - o.epsilonLow, 1 + o.epsilonHigh), a));
  const towardRef = g.sub(refLogp, newLogp);
  const k3 = g.sub(g.sub(g.exp(towardRef), towardRef), 1);
  const perToken = g.mul(g.add(g.neg(surrogate), g.mul(k3, o.klBeta)), mask);
  return aggregate(g, o, perToken, mask, divisor);
}

/**
 * The token aggregations of dro/grpo.ts over a micro-batch, divided by the whole batch's normaliser (fed:
 * see lossDivisor in engine/training.ts), so the micro-batches' losses sum to the batch's loss and their
 * gradients to its gradient. A row without counted tokens contributes 0.
 */
function aggregate(g: Graph, o: LossGraphOptions, perToken: Tensor, mask: Tensor, divisor: Tensor): Tensor {
  if (o.aggregation !== 'sequence-mean') return g.div(g.reduceSum(perToken, [0, 1]), divisor);
  const counts = g.reduceSum(mask, [1]);
  const rowMeans = g.div(g.reduceSum(perToken, [1]), g.max(counts, g.scalar(1, counts)));
  return g.div(g.reduceSum(rowMeans, [0]), divisor);
}

interface LossGraph {
  g: Graph;
  /** The trained tensors: every parameter, or only the LoRA adapters. */
  params: Map<string, Tensor>;
  loss: Tensor;
}

/**
 * The model's weights and its logits. Under LoRA the base weights are frozen by being inputs nobody
 * differentiates, not initializers: one copy in memory is fed by reference to every session (score and
 * train share it, nothing is rebuilt when a checkpoint loads), where baked-in weights would put another
 * copy into each session and a model's bytes into the ONNX proto, which protobuf caps at 2 GB.
 */
function declareLossModel(g: Graph, config: ModelConfig, dtype: DType, lora: LoraConfig | undefined): { trained: Map<string, Tensor>; logits: Tensor; ids: Tensor } {
  const params = declareParameters(g, config, dtype);
  const adapters = lora ? declareAdapters(g, config, lora, dtype) : undefined;
  const inputs = declareModelInputs(g, dtype);
  const logits = transformerLogits(g, config, params, inputs, { adapters: adapters?.byWeight, allButLastPosition: true });
  return { trained: adapters?.inputs ?? params, logits, ids: inputs.ids };
}

/** Model inputs, the completion mask (and GRPO inputs), the batch's loss divisor, and the micro-batch's share of the loss. */
function buildLoss(config: ModelConfig, o: LossGraphOptions, name: string, lora?: LoraConfig): LossGraph {
  const g = new Graph(name);
  const { trained: params, logits, ids } = declareLossModel(g, config, o.dtype, lora);
  const mask = g.input(TRAIN_IO.completionMask, o.dtype, ['batch', 'seq-1']);
  const divisor = g.input(TRAIN_IO.lossDivisor, o.dtype, []);
  const { logprobs } = nextTokenLogprobs(g, logits, ids);
  let loss: Tensor;
  if (o.loss === 'sft') {
    loss = g.div(g.neg(g.reduceSum(g.mul(logprobs, mask), [0, 1])), divisor);
  } else {
    const advantages = g.input(TRAIN_IO.advantages, o.dtype, ['batch']);
    const oldLogp = g.input(TRAIN_IO.oldLogprobs, o.dtype, ['batch', 'seq-1']);
    const refLogp = g.input(TRAIN_IO.refLogprobs, o.dtype, ['batch', 'seq-1']);
    loss = grpoLoss(g, o, logprobs, mask, advantages, oldLogp, refLogp, divisor);
  }
  return { g, params, loss };
}

/**
 * A micro-batch's share of the loss and the gradient of every trained tensor (outputs `loss` and
 * `grad.<name>`). With `accumulate`, `grad.<name>` is `grad_in.<name>` (the sum over the micro-batches
 * before) plus this one's, added in the graph so no separate pass over the parameters is needed.
 */
export function buildGradientGraph(config: ModelConfig, o: LossGraphOptions, lora?: LoraConfig, accumulate = false): Graph {
  const { g, params, loss } = buildLoss(config, o, `gradient_${o.loss}${accumulate ? '_accumulate' : ''}`, lora);
  const names = [...params.keys()];
  gradients(g, loss, names.map((n) => params.get(n)!)).forEach((grad, i) => {
    const name = names[i]!;
    g.output(accumulate ? g.add(g.input(TRAIN_IO.gradIn(name), o.dtype, [...grad.shape]), grad) : grad, TRAIN_IO.grad(name));
  });
  g.output(loss, TRAIN_IO.loss);
  return g;
}

/**
 * One optimizer step on the whole batch's gradient: global-norm clipping, then AdamW with decoupled
 * weight decay. The learning rate and Adam's bias corrections are inputs, so schedules stay outside the
 * graph and the step count is never baked in.
 */
export function buildOptimizerGraph(trained: readonly ParamSpec[], o: OptimizerGraphOptions): Graph {
  const g = new Graph('optimizer');
  const params = trained.map((spec) => g.input(spec.name, o.dtype, [...spec.shape]));
  const grads = trained.map((spec) => g.input(TRAIN_IO.grad(spec.name), o.dtype, [...spec.shape]));
  optimizerStep(g, trained.map((spec) => spec.name), params, grads, o);
  return g;
}

/**
 * A whole update in one graph, for a batch that is one micro-batch: its loss, gradients and the optimizer
 * step, the same operators as the gradient graph and the optimizer graph in sequence, with no gradient
 * leaving the session (one run and two copies of the trained tensors fewer). ONNX Runtime rounds the
 * norm of gradients it holds in the last bit differently from that of gradients fed in, so a batch gives
 * the same bits every time it runs, not the same bits as split into micro-batches.
 */
export function buildFusedTrainGraph(config: ModelConfig, loss: LossGraphOptions, optimizer: OptimizerGraphOptions, lora?: LoraConfig): Graph {
  const { g, params, loss: value } = buildLoss(config, loss, `train_${loss.loss}`, lora);
  const names = [...params.keys()];
  const tensors = names.map((n) => params.get(n)!);
  optimizerStep(g, names, tensors, gradients(g, value, tensors), optimizer, value);
  return g;
}

/** Clipping and AdamW over `grads`, with the new tensors, moments and the norm as outputs (and `loss` before the norm, as the fused graph always had it). */
function optimizerStep(g: Graph, names: readonly string[], params: readonly Tensor[], grads: readonly Tensor[], o: OptimizerGraphOptions, loss?: Tensor): void {
  let sumSquares: Tensor | undefined;
  for (const grad of grads) {
    const s = g.reduceSum(g.mul(grad, grad), grad.shape.map((_, i) => i));
    sumSquares = sumSquares ? g.add(sumSquares, s) : s;
  }
  const gradNorm = g.sqrt(sumSquares!);
  // Clip by global norm: scale = min(1, max / (norm + 1e-6)).
  const clipScale = o.maxGradNorm > 0 ? g.min(g.scalar(1, o.dtype), g.div(o.maxGradNorm, g.add(gradNorm, 1e-6))) : undefined;

  const lr = g.input(TRAIN_IO.learningRate, o.dtype, []);
  const bc1 = g.input(TRAIN_IO.biasCorrection1, o.dtype, []);
  const bc2 = g.input(TRAIN_IO.biasCorrection2, o.dtype, []);
  names.forEach((name, i) => {
    const p = params[i]!;
    const grad = clipScale ? g.mul(grads[i]!, clipScale) : grads[i]!;
    const m = g.input(TRAIN_IO.m(name), o.dtype, [...p.shape]);
    const v = g.input(TRAIN_IO.v(name), o.dtype, [...p.shape]);
    const m2 = g.add(g.mul(m, o.beta1), g.mul(grad, 1 - o.beta1));
    const v2 = g.add(g.mul(v, o.beta2), g.mul(g.mul(grad, grad), 1 - o.beta2));
    const update = g.div(g.div(m2, bc1), g.add(g.sqrt(g.div(v2, bc2)), o.epsilon));
    const decayed = o.weightDecay > 0 && decays(p.shape) ? g.mul(p, g.sub(1, g.mul(lr, o.weightDecay))) : p;
    g.output(g.sub(decayed, g.mul(lr, update)), TRAIN_IO.newParam(name));
    g.output(m2, TRAIN_IO.newM(name));
    g.output(v2, TRAIN_IO.newV(name));
  });
  if (loss) g.output(loss, TRAIN_IO.loss);
  g.output(gradNorm, TRAIN_IO.gradNorm);
}

/** Names of the scoring graphs' extra inputs and outputs. */
export const SCORE_IO = {
  /** Per row, the positions whose next token is a target [B, K]; a short row repeats its last. */
  targetPositions: 'target_positions',
  /** The target ids [B, K]: ids[position + 1]. */
  targetIds: 'target_ids',
  /** Prefixes' keys and values of one layer [B, kvHeads, 1, P, d]: the prefix graph's outputs, the after-prefix score graph's inputs. */
  prefixKey: (layer: number) => `prefix.${layer}.key`,
  prefixValue: (layer: number) => `prefix.${layer}.value`,
  /** Which prefix slots of each row are real [B, P] (the after-prefix score graph). */
  prefixMask: 'prefix_mask',
} as const;

/**
 * The scoring graph: log-probs and ranks [B, K] of the targets at the given positions of a padded batch
 * (through the adapters under LoRA). Only those positions go through the output projection, the log-softmax
 * and the rank count, so a reference of L tokens after a long chain costs L vocabulary-sized rows, not one
 * per token of the chain.
 */
export function buildScoreGraph(config: ModelConfig, dtype: DType, lora?: LoraConfig, afterPrefix = false): Graph {
  const g = new Graph(afterPrefix ? 'score_after_prefix' : 'score');
  const params = declareParameters(g, config, dtype);
  const adapters = lora ? declareAdapters(g, config, lora, dtype) : undefined;
  const inputs = declareModelInputs(g, dtype);
  const outputPositions = g.input(SCORE_IO.targetPositions, 'int64', ['batch', 'targets']);
  const targets = g.input(SCORE_IO.targetIds, 'int64', ['batch', 'targets']);
  const shape = ['batch', config.num_key_value_heads, 1, 'prefix', config.head_dim];
  const prefix = afterPrefix
    ? {
        cache: Array.from({ length: config.num_hidden_layers }, (_, layer) => ({ key: g.input(SCORE_IO.prefixKey(layer), dtype, shape), value: g.input(SCORE_IO.prefixValue(layer), dtype, shape) })),
        mask: g.input(SCORE_IO.prefixMask, dtype, ['batch', 'prefix']),
      }
    : undefined;
  const logits = transformerLogits(g, config, params, inputs, { adapters: adapters?.byWeight, outputPositions, ...(prefix ? { prefix } : {}) });
  const scores = targetLogprobs(g, logits, targets);
  g.output(scores.logprobs, 'logprobs');
  g.output(targetRanks(g, scores), 'ranks');
  return g;
}

/**
 * Prefixes [R, P] (right-padded), for the after-prefix score graph: every layer's keys and values (after
 * the rotary embedding), through the adapters under LoRA, so the rows that share one need not run it each.
 */
export function buildPrefixGraph(config: ModelConfig, dtype: DType, lora?: LoraConfig): Graph {
  const g = new Graph('score_prefix');
  const params = declareParameters(g, config, dtype);
  const adapters = lora ? declareAdapters(g, config, lora, dtype) : undefined;
  const inputs = declareModelInputs(g, dtype);
  // Only the cache is read; one position's logits is the cheapest way to end the forward pass.
  const { present } = transformerForward(g, config, params, inputs, { adapters: adapters?.byWeight, lastPositionOnly: true });
  present.forEach((c, layer) => {
    g.output(c.key, SCORE_IO.prefixKey(layer));
    g.output(c.value, SCORE_IO.prefixValue(layer));
  });
  return g;
}
