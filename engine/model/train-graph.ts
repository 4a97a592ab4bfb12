// The training-step graph: the GRPO loss exactly as dro/grpo.ts defines it (or the SFT loss), its
// gradients by engine/onnx/autodiff.ts, global-norm clipping and a decoupled-weight-decay AdamW update,
// all in one ONNX session. The learning rate and Adam's bias corrections are inputs, so schedules stay
// outside the graph and the step count is never baked in. With LoRA only the adapters are differentiated
// and updated; the frozen base weights stay plain inputs (see declareLossModel).
import type { Aggregation } from '../../dro/grpo.js';
import { gradients } from '../onnx/autodiff.js';
import { Graph, type DType, type Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import { declareAdapters, type LoraConfig } from './lora.js';
import { declareModelInputs, declareParameters, nextTokenLogprobs, nextTokenRanks, transformerLogits } from './transformer.js';

export interface TrainGraphOptions {
  dtype: DType;
  loss: 'grpo' | 'sft';
  epsilonLow: number;
  epsilonHigh: number;
  klBeta: number;
  aggregation: Aggregation;
  /** 'dr-grpo' divisor per sequence. */
  maxCompletionLength: number;
  /** Global gradient-norm clip; 0 = off. */
  maxGradNorm: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

/** Names of the graph's extra inputs and outputs, shared with the engine that feeds it. */
export const TRAIN_IO = {
  completionMask: 'completion_mask',
  advantages: 'advantages',
  oldLogprobs: 'old_logprobs',
  refLogprobs: 'ref_logprobs',
  learningRate: 'learning_rate',
  biasCorrection1: 'bias_correction1',
  biasCorrection2: 'bias_correction2',
  loss: 'loss',
  gradNorm: 'grad_norm',
  tokenLogprobs: 'token_logprobs',
  m: (name: string) => `adam_m.${name}`,
  v: (name: string) => `adam_v.${name}`,
  newParam: (name: string) => `new.${name}`,
  newM: (name: string) => `new.adam_m.${name}`,
  newV: (name: string) => `new.adam_v.${name}`,
} as const;

/** Parameters that get weight decay: matrices only, not norms or biases (the usual AdamW practice). */
export const decays = (shape: readonly unknown[]): boolean => shape.length >= 2;

function grpoLoss(g: Graph, o: TrainGraphOptions, newLogp: Tensor, mask: Tensor, advantages: Tensor, oldLogp: Tensor, refLogp: Tensor): Tensor {
  const a = g.unsqueeze(advantages, [1]);
  const ratio = g.exp(g.sub(newLogp, oldLogp));
  const surrogate = g.min(g.mul(ratio, a), g.mul(g.clip(ratio, 1 - o.epsilonLow, 1 + o.epsilonHigh), a));
  const towardRef = g.sub(refLogp, newLogp);
  const k3 = g.sub(g.sub(g.exp(towardRef), towardRef), 1);
  const perToken = g.mul(g.add(g.neg(surrogate), g.mul(k3, o.klBeta)), mask);
  return aggregate(g, o, perToken, mask);
}

/** The token aggregations of dro/grpo.ts; a row or batch without counted tokens contributes 0. */
function aggregate(g: Graph, o: TrainGraphOptions, perToken: Tensor, mask: Tensor): Tensor {
  const total = g.reduceSum(perToken, [0, 1]);
  switch (o.aggregation) {
    case 'dr-grpo':
      return g.div(total, g.mul(g.countOf(perToken, [0], perToken.dtype), o.maxCompletionLength));
    case 'token-mean':
      return g.div(total, g.max(g.reduceSum(mask, [0, 1]), g.scalar(1, mask)));
    case 'sequence-mean': {
      const counts = g.reduceSum(mask, [1]);
      const rowMeans = g.div(g.reduceSum(perToken, [1]), g.max(counts, g.scalar(1, counts)));
      const rows = g.reduceSum(g.cast(g.greater(counts, g.scalar(0, counts)), perToken.dtype), [0]);
      return g.div(g.reduceSum(rowMeans, [0]), g.max(rows, g.scalar(1, rows)));
    }
  }
}

interface LossGraph {
  g: Graph;
  /** The trained tensors: every parameter, or only the LoRA adapters. */
  params: Map<string, Tensor>;
  loss: Tensor;
  logprobs: Tensor;
}

/**
 * The model's weights and its logits. Under LoRA the base weights are frozen by being inputs nobody
 * differentiates, not initializers: one copy in memory is fed by reference to every session (score and
 * train share it, nothing is rebuilt when a checkpoint loads), where baked-in weights would put another
 * copy into each session and a model's bytes into the ONNX proto, which protobuf caps at 2 GB.
 */
function declareLossModel(g: Graph, config: ModelConfig, dtype: TrainGraphOptions['dtype'], lora: LoraConfig | undefined): { trained: Map<string, Tensor>; logits: Tensor; ids: Tensor } {
  const params = declareParameters(g, config, dtype);
  const adapters = lora ? declareAdapters(g, config, lora, dtype) : undefined;
  const inputs = declareModelInputs(g, dtype);
  const logits = transformerLogits(g, config, params, inputs, { adapters: adapters?.byWeight });
  return { trained: adapters?.inputs ?? params, logits, ids: inputs.ids };
}

/** Model inputs, the completion mask (and GRPO inputs), and the scalar loss. */
function buildLoss(config: ModelConfig, o: Pick<TrainGraphOptions, 'dtype' | 'loss' | 'epsilonLow' | 'epsilonHigh' | 'klBeta' | 'aggregation' | 'maxCompletionLength'>, name: string, lora?: LoraConfig): LossGraph {
  const g = new Graph(name);
  const { trained: params, logits, ids } = declareLossModel(g, config, o.dtype, lora);
  const mask = g.input(TRAIN_IO.completionMask, o.dtype, ['batch', 'seq-1']);
  const { logprobs } = nextTokenLogprobs(g, logits, ids);
  let loss: Tensor;
  if (o.loss === 'sft') {
    loss = g.div(g.neg(g.reduceSum(g.mul(logprobs, mask), [0, 1])), g.max(g.reduceSum(mask, [0, 1]), g.scalar(1, mask)));
  } else {
    const advantages = g.input(TRAIN_IO.advantages, o.dtype, ['batch']);
    const oldLogp = g.input(TRAIN_IO.oldLogprobs, o.dtype, ['batch', 'seq-1']);
    const refLogp = g.input(TRAIN_IO.refLogprobs, o.dtype, ['batch', 'seq-1']);
    loss = grpoLoss(g, o as TrainGraphOptions, logprobs, mask, advantages, oldLogp, refLogp);
  }
  return { g, params, loss, logprobs };
}

/** Loss and the raw gradient of every trained tensor (outputs `loss` and `grad.<name>`): for gradient checks. */
export function buildGradientGraph(config: ModelConfig, o: Pick<TrainGraphOptions, 'dtype' | 'loss' | 'epsilonLow' | 'epsilonHigh' | 'klBeta' | 'aggregation' | 'maxCompletionLength'>, lora?: LoraConfig): Graph {
  const { g, params, loss } = buildLoss(config, o, `gradient_${o.loss}`, lora);
  const names = [...params.keys()];
  gradients(g, loss, names.map((n) => params.get(n)!)).forEach((grad, i) => g.output(grad, `grad.${names[i]!}`));
  g.output(loss, TRAIN_IO.loss);
  return g;
}

export function buildTrainGraph(config: ModelConfig, o: TrainGraphOptions, lora?: LoraConfig): Graph {
  const { g, params, loss, logprobs } = buildLoss(config, o, `train_${o.loss}`, lora);
  const names = [...params.keys()];
  const paramTensors = names.map((n) => params.get(n)!);
  const grads = gradients(g, loss, paramTensors);
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
    const p = paramTensors[i]!;
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
  g.output(loss, TRAIN_IO.loss);
  g.output(gradNorm, TRAIN_IO.gradNorm);
  g.output(logprobs, TRAIN_IO.tokenLogprobs);
  return g;
}

/** The scoring graph: next-token log-probs and ranks for a padded batch (through the adapters under LoRA). */
export function buildScoreGraph(config: ModelConfig, dtype: DType, lora?: LoraConfig): Graph {
  const g = new Graph('score');
  const { logits, ids } = declareLossModel(g, config, dtype, lora);
  const scores = nextTokenLogprobs(g, logits, ids);
  g.output(scores.logprobs, 'logprobs');
  g.output(nextTokenRanks(g, scores), 'ranks');
  return g;
}
