// Training updates: checking a batch, packing it into micro-batches by a token budget and turning those
// into gradient-graph feeds (masks, GRPO inputs, the whole batch's loss divisor), a bounded cache of train
// sessions, and running a sequence of updates (gradients accumulated over the micro-batches, then one
// clipped AdamW step) on copies of the optimizer state, so the engine commits all of them or none.
import { packByTokens, PackingError } from '../dro/batch-plan.js';
import { AGGREGATIONS } from '../dro/grpo.js';
import { checkIds, paddedFeeds, scalarFeed, weightFeeds, type Weights } from './batching.js';
import { zeros, type FloatArray, type FloatDType } from './float-arrays.js';
import { EngineInputError, NonFiniteUpdateError, throwIfAborted } from './errors.js';
import type { RunConfig } from '../dro/config.js';
import { resolveMicroBatchTokens } from './memory.js';
import type { ModelConfig } from './model/config.js';
import type { LoraConfig } from './model/lora.js';
import type { ParamSpec } from './model/params.js';
import { buildFusedTrainGraph, buildGradientGraph, buildOptimizerGraph, TRAIN_IO, type LossGraphOptions, type OptimizerGraphOptions } from './model/train-graph.js';
import type { Graph } from './onnx/graph.js';
import { OrtSession, releaseUnreferencedOutputs, type SessionOptions, type TensorData } from './ort.js';

export interface TrainSequence {
  ids: number[];
  /** Index of the first completion token; tokens before it are the prompt and carry no loss. */
  completionStart: number;
  /** GRPO only: the sequence's advantage, and per completion token the old and reference-policy log-probs. */
  advantage?: number;
  oldLogprobs?: number[];
  referencePolicyLogprobs?: number[];
  /** A truncated completion contributes no tokens (when the loss masks truncation). */
  truncated?: boolean;
}

/**
 * An update's options: the loss and optimizer graphs' (less their float type), the learning rate,
 * truncation masking, the Dr. GRPO divisor and the micro-batch budget. Every field is required: the run
 * config owns the defaults, not the engine. An SFT update ignores the GRPO fields (clip range, KL weight,
 * aggregation, the Dr. GRPO divisor).
 */
export interface TrainStepOptions extends Omit<LossGraphOptions, 'dtype'>, Omit<OptimizerGraphOptions, 'dtype'> {
  learningRate: number;
  /** A truncated sequence contributes no tokens. */
  maskTruncated: boolean;
  /** 'dr-grpo' divisor per sequence: a fixed budget (the rollout's max new tokens), at least the longest completion. */
  maxCompletionLength: number;
  /**
   * Most tokens per micro-batch, padding included (sequences × the longest): the batch runs through the
   * gradient graph in micro-batches of this size (packed longest first, dro/batch-plan.ts), and their gradients are added
   * before one optimizer step. It bounds an update's activation memory, whatever the batch size.
   */
  microBatchTokens: number | 'auto';
}

/** A run's options for every update but the loss and learning rate (the engine has no defaults; an SFT update ignores the GRPO fields). */
export function trainStepOptionsOf(config: RunConfig): Omit<TrainStepOptions, 'loss' | 'learningRate'> {
  const { dro, optimizer: o } = config;
  return {
    epsilonLow: dro.epsilonLow,
    epsilonHigh: dro.epsilonHigh,
    klBeta: dro.klBeta,
    aggregation: dro.aggregation,
    maskTruncated: dro.maskTruncated,
    maxCompletionLength: config.rollout.maxNewTokens,
    microBatchTokens: config.update.microBatchTokens,
    maxGradNorm: o.maxGradNorm,
    beta1: o.beta1,
    beta2: o.beta2,
    epsilon: o.epsilon,
    weightDecay: o.weightDecay,
  };
}

const NUMBER_OPTIONS = ['epsilonLow', 'epsilonHigh', 'klBeta', 'maxGradNorm', 'beta1', 'beta2', 'epsilon', 'weightDecay'] as const;

export interface TrainStepResult {
  loss: number;
  gradNorm: number;
  /** Optimizer steps taken so far. */
  step: number;
  tokens: number;
  /** Micro-batches the batch ran in. */
  microBatches: number;
}

export interface TrainStep {
  sequences: readonly TrainSequence[];
  options: TrainStepOptions;
}

/**
 * What an update reads and writes. Missing moments are zeros. Updates build new maps and arrays and
 * never write into these, which is what lets a failed sequence of updates leave them untouched.
 */
export interface AdamState {
  params: ReadonlyMap<string, FloatArray>;
  m: ReadonlyMap<string, FloatArray>;
  v: ReadonlyMap<string, FloatArray>;
  /** Updates applied so far. */
  step: number;
}

interface PreparedUpdate {
  loss: LossGraphOptions;
  optimizer: OptimizerGraphOptions;
  /** Per micro-batch, in the plan's order: everything except the weights and the accumulated gradient. */
  microBatches: Record<string, TensorData>[];
  learningRate: number;
  tokens: number;
}

/** Loss graph options for an update. Fields a loss does not use are pinned, so they never split the session cache. */
export function lossGraphOptions(dtype: FloatDType, options: TrainStepOptions): LossGraphOptions {
  const grpo = options.loss === 'grpo';
  return {
    dtype,
    loss: options.loss,
    epsilonLow: grpo ? options.epsilonLow : 0,
    epsilonHigh: grpo ? options.epsilonHigh : 0,
    klBeta: grpo ? options.klBeta : 0,
    aggregation: grpo ? options.aggregation : 'token-mean',
  };
}

export function optimizerGraphOptions(dtype: FloatDType, options: TrainStepOptions): OptimizerGraphOptions {
  const { maxGradNorm, beta1, beta2, epsilon, weightDecay } = options;
  return { dtype, maxGradNorm, beta1, beta2, epsilon, weightDecay };
}

/**
 * The whole batch's loss normaliser, which every micro-batch divides by, so their losses and gradients
 * add up to the batch's (dro/grpo.ts): the counted tokens (SFT, token-mean), the sequences × the Dr.
 * GRPO budget, or the sequences with a counted token (sequence-mean); at least 1, so a batch without
 * counted tokens has loss 0. Every value is an integer, exact in float32.
 */
export function lossDivisor(options: TrainStepOptions, counted: readonly number[]): number {
  if (options.loss === 'grpo' && options.aggregation === 'dr-grpo') return counted.length * options.maxCompletionLength;
  if (options.loss === 'grpo' && options.aggregation === 'sequence-mean') return Math.max(1, counted.filter((n) => n > 0).length);
  return Math.max(1, counted.reduce((a, b) => a + b, 0));
}

function checkOptions(options: TrainStepOptions, sequences: readonly TrainSequence[]): void {
  if (options.loss !== 'grpo' && options.loss !== 'sft') throw new EngineInputError(`loss must be 'grpo' or 'sft', got ${JSON.stringify(options.loss)}`);
  if (!Number.isFinite(options.learningRate) || options.learningRate < 0) throw new EngineInputError(`learningRate must be a finite number ≥ 0, got ${options.learningRate}`);
  // No field has a default here, so a missing one is named rather than fed to the graph as NaN.
  for (const name of NUMBER_OPTIONS) if (!Number.isFinite(options[name])) throw new EngineInputError(`${name} must be a finite number, got ${options[name]}`);
  if (!AGGREGATIONS.includes(options.aggregation)) throw new EngineInputError(`aggregation must be one of ${AGGREGATIONS.join(', ')}, got ${JSON.stringify(options.aggregation)}`);
  if (typeof options.maskTruncated !== 'boolean') throw new EngineInputError(`maskTruncated must be a boolean, got ${JSON.stringify(options.maskTruncated)}`);
  if (options.microBatchTokens !== 'auto' && (!Number.isSafeInteger(options.microBatchTokens) || options.microBatchTokens < 1)) {
    throw new EngineInputError(`microBatchTokens must be 'auto' or a positive integer, got ${JSON.stringify(options.microBatchTokens)}`);
  }
  if (options.loss === 'grpo' && options.aggregation === 'dr-grpo') {
    const longest = Math.max(1, ...sequences.map((s) => s.ids.length - s.completionStart));
    const budget = options.maxCompletionLength;
    if (!Number.isInteger(budget) || budget < longest) throw new EngineInputError(`maxCompletionLength ${budget} must be an integer of at least the longest completion (${longest} tokens)`);
  }
}

/** Each sequence's tokens that carry loss: its completion, or none when it is truncated and truncation is masked. */
export const countedTokens = (sequences: readonly TrainSequence[], maskTruncated: boolean): number[] =>
  sequences.map((s) => (s.truncated && maskTruncated ? 0 : s.ids.length - s.completionStart));

/**
 * The micro-batches of an update, by dro/batch-plan.ts (longest first, padding counted), as indices into
 * `sequences`. A sequence without counted tokens (a masked truncation) adds exactly nothing to the loss
 * or the gradients, only its share of the divisor, so it is left out: under maskTruncated the truncated
 * chains, the longest of a batch, would otherwise cost the most work. A batch with no counted token
 * has no micro-batch: its gradient is zero and its optimizer step still runs (moments, weight decay).
 */
export function microBatchPlan(sequences: readonly TrainSequence[], microBatchTokens: number, counted = countedTokens(sequences, false)): number[][] {
  const trained = sequences.flatMap((_, i) => (counted[i]! > 0 ? [i] : []));
  try {
    return packByTokens(trained.map((i) => sequences[i]!.ids.length), { maxTokens: microBatchTokens, maxSequences: Infinity }).map((group) => group.map((k) => trained[k]!));
  } catch (err) {
    if (err instanceof PackingError) throw new EngineInputError(`microBatchTokens ${microBatchTokens} is less than sequence ${trained[err.index]}'s ${err.length} tokens; a sequence is never split`, { cause: err });
    throw err;
  }
}

function prepareUpdate(config: ModelConfig, dtype: FloatDType, sequences: readonly TrainSequence[], options: TrainStepOptions): PreparedUpdate {
  checkOptions(options, sequences);
  if (sequences.length === 0) throw new EngineInputError('empty batch');
  const grpo = options.loss === 'grpo';
  const counted = countedTokens(sequences, options.maskTruncated);
  sequences.forEach((s, b) => {
    if (!Number.isInteger(s.completionStart) || s.completionStart < 1 || s.completionStart > s.ids.length) {
      throw new EngineInputError(`sequence ${b}: completionStart ${s.completionStart} must be in 1..${s.ids.length}`);
    }
    const n = s.ids.length - s.completionStart;
    if (grpo && counted[b]! > 0 && (s.advantage === undefined || s.oldLogprobs?.length !== n || s.referencePolicyLogprobs?.length !== n)) {
      throw new EngineInputError(`sequence ${b}: GRPO needs an advantage and ${n} old and reference-policy log-probs (one per completion token)`);
    }
  });
  checkIds(config, sequences.map((s) => s.ids));
  const divisor = scalarFeed(dtype, lossDivisor(options, counted));
  const microBatches = microBatchPlan(sequences, resolveMicroBatchTokens(options.microBatchTokens, config), counted).map((group) => {
    const rows = group.map((i) => sequences[i]!);
    const { feeds, length } = paddedFeeds(config, dtype, rows.map((s) => s.ids), 'right');
    const B = rows.length;
    const width = length - 1;
    const completionMask = zeros(dtype, B * width);
    const advantages = zeros(dtype, B);
    const oldLogp = zeros(dtype, B * width);
    const refLogp = zeros(dtype, B * width);
    rows.forEach((s, b) => {
      const n = s.ids.length - s.completionStart;
      const mask = counted[group[b]!]! > 0 ? 1 : 0;
      if (grpo) advantages[b] = s.advantage ?? 0;
      for (let j = 0; j < n; j++) {
        // Target index t predicts ids[t + 1]: completion token j is target completionStart − 1 + j.
        const t = b * width + s.completionStart - 1 + j;
        completionMask[t] = mask;
        if (grpo && mask) {
          oldLogp[t] = s.oldLogprobs![j]!;
          refLogp[t] = s.referencePolicyLogprobs![j]!;
        }
      }
    });
    feeds[TRAIN_IO.completionMask] = { dtype, dims: [B, width], data: completionMask };
    feeds[TRAIN_IO.lossDivisor] = divisor;
    if (grpo) {
      feeds[TRAIN_IO.advantages] = { dtype, dims: [B], data: advantages };
      feeds[TRAIN_IO.oldLogprobs] = { dtype, dims: [B, width], data: oldLogp };
      feeds[TRAIN_IO.refLogprobs] = { dtype, dims: [B, width], data: refLogp };
    }
    return feeds;
  });
  return { loss: lossGraphOptions(dtype, options), optimizer: optimizerGraphOptions(dtype, options), microBatches, learningRate: options.learningRate, tokens: counted.reduce((a, b) => a + b, 0) };
}

/** The gradient graph's feeds of each micro-batch of `sequences` (all but the weights): for gradient checks. */
export function microBatchFeeds(config: ModelConfig, dtype: FloatDType, sequences: readonly TrainSequence[], options: TrainStepOptions): Record<string, TensorData>[] {
  return prepareUpdate(config, dtype, sequences, options).microBatches;
}

/**
 * The graphs an update runs: a micro-batch's gradients (the first one's, or added to those before), and
 * the optimizer step; or, for a batch that is one micro-batch, both in one graph.
 */
export type TrainGraphKey =
  | { kind: 'gradient'; accumulate: boolean; options: LossGraphOptions }
  | { kind: 'optimizer'; options: OptimizerGraphOptions }
  | { kind: 'fused'; options: { loss: LossGraphOptions; optimizer: OptimizerGraphOptions } };

/**
 * Train sessions by graph, least recently used first. A run alternates between very few option sets (an
 * SFT warm start, then GRPO), each with two gradient graphs and an optimizer graph, so a handful bounds
 * memory without rebuilding.
 */
export class TrainSessions {
  private readonly sessions = new Map<string, Promise<OrtSession>>();

  constructor(
    private readonly config: ModelConfig,
    private readonly sessionOptions: SessionOptions,
    /** The tensors an update trains (their optimizer graph's inputs). */
    private readonly trained: readonly ParamSpec[],
    readonly capacity = 6,
    /** Train LoRA adapters instead of every parameter. */
    private readonly lora?: LoraConfig,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  private build(key: TrainGraphKey): Graph {
    if (key.kind === 'gradient') return buildGradientGraph(this.config, key.options, this.lora, key.accumulate);
    if (key.kind === 'optimizer') return buildOptimizerGraph(this.trained, key.options);
    return buildFusedTrainGraph(this.config, key.options.loss, key.options.optimizer, this.lora);
  }

  async get(graph: TrainGraphKey): Promise<OrtSession> {
    const key = JSON.stringify(graph);
    let session = this.sessions.get(key);
    if (session) this.sessions.delete(key);
    else {
      // Without the arena a 2,048-token micro-batch of SmolLM2-135M peaked at 7.2 GiB, not 11.7, at the same speed.
      session = OrtSession.create(this.build(graph).toModelBytes(), { ...this.sessionOptions, memoryPattern: false, memoryArena: false });
      // A failed build must not stay cached as a permanent failure.
      session.catch(() => this.sessions.get(key) === session && this.sessions.delete(key));
    }
    this.sessions.set(key, session);
    for (const [oldKey, old] of this.sessions) {
      if (this.sessions.size <= this.capacity) break;
      this.sessions.delete(oldKey);
      await old.then((s) => s.release(), () => undefined);
    }
    return session;
  }

  async release(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) await s.then((x) => x.release(), () => undefined);
  }
}

/**
 * ONNX Runtime cannot interrupt a run, so aborts are honoured between runs. Yielding a turn first lets
 * a cancel message that arrived during the run (on the engine thread) abort the signal before the check.
 */
async function checkAbort(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await new Promise((resolve) => setImmediate(resolve));
  throwIfAborted(signal);
}

/** What the updates train: `start.params` holds the `trained` tensors; `frozen` weights are fed unchanged. */
export interface TrainedModel {
  config: ModelConfig;
  dtype: FloatDType;
  /** Every parameter, or under LoRA the adapters. */
  trained: readonly ParamSpec[];
  /** The frozen LoRA base weights, or undefined when every parameter is trained. */
  frozen?: Weights;
}

/** A prepared update's loss and gradient: its micro-batches' shares, summed in the plan's order by the accumulating graph. */
async function accumulateGradients(model: TrainedModel, sessions: TrainSessions, params: ReadonlyMap<string, FloatArray>, p: PreparedUpdate, signal?: AbortSignal): Promise<{ loss: number; grads: Map<string, FloatArray> }> {
  const { dtype, trained: specs } = model;
  const weights = { ...(model.frozen ? weightFeeds(dtype, model.frozen) : {}), ...weightFeeds(dtype, { specs, values: params }) };
  let grads: Map<string, FloatArray> | undefined;
  let loss = 0;
  for (const microBatch of p.microBatches) {
    await checkAbort(signal);
    const session = await sessions.get({ kind: 'gradient', accumulate: grads !== undefined, options: p.loss });
    await checkAbort(signal);
    const feeds: Record<string, TensorData> = { ...weights, ...microBatch };
    for (const spec of specs) if (grads) feeds[TRAIN_IO.gradIn(spec.name)] = { dtype, dims: spec.shape, data: grads.get(spec.name)! };
    // The gradients (and states) earlier runs replaced are freed, so this run reuses their memory.
    releaseUnreferencedOutputs();
    const out = await session.run(feeds);
    loss += Number(out[TRAIN_IO.loss]!.data[0]);
    grads = new Map(specs.map((spec) => [spec.name, out[TRAIN_IO.grad(spec.name)]!.data as FloatArray]));
  }
  // A batch without counted tokens has no micro-batch: its loss and gradient are zero.
  return { loss, grads: grads ?? new Map(specs.map((spec) => [spec.name, zeros(dtype, params.get(spec.name)!.length)])) };
}

/** The loss and raw (unclipped) gradient of one batch at `params`, without an optimizer step: for gradient checks. */
export async function batchGradient(model: TrainedModel, sessions: TrainSessions, params: ReadonlyMap<string, FloatArray>, step: TrainStep): Promise<{ loss: number; grads: Map<string, FloatArray>; microBatches: number }> {
  const p = prepareUpdate(model.config, model.dtype, step.sequences, step.options);
  return { ...(await accumulateGradients(model, sessions, params, p)), microBatches: p.microBatches.length };
}

/**
 * Runs the updates in order, each on the state the previous one produced, and returns the final state
 * without touching `start`. Every batch is checked before the first session run, and the signal before
 * and after every run, the last one included.
 */
export async function runUpdates(
  model: TrainedModel,
  sessions: TrainSessions,
  start: AdamState,
  steps: readonly TrainStep[],
  signal?: AbortSignal,
  onProgress?: (updates: number) => void,
): Promise<{ state: AdamState; results: TrainStepResult[] }> {
  const { config, dtype, trained: specs } = model;
  const prepared = steps.map((s, i) => {
    try {
      return prepareUpdate(config, dtype, s.sequences, s.options);
    } catch (err) {
      if (err instanceof EngineInputError && steps.length > 1) throw new EngineInputError(`train step ${i}: ${err.message}`, { cause: err });
      throw err;
    }
  });
  let state = start;
  const results: TrainStepResult[] = [];
  for (const p of prepared) {
    const update = state.step + 1;
    const feeds: Record<string, TensorData> = {
      ...weightFeeds(dtype, { specs, values: state.params }),
      [TRAIN_IO.learningRate]: scalarFeed(dtype, p.learningRate),
      [TRAIN_IO.biasCorrection1]: scalarFeed(dtype, 1 - Math.pow(p.optimizer.beta1, update)),
      [TRAIN_IO.biasCorrection2]: scalarFeed(dtype, 1 - Math.pow(p.optimizer.beta2, update)),
    };
    for (const spec of specs) {
      const size = state.params.get(spec.name)!.length;
      feeds[TRAIN_IO.m(spec.name)] = { dtype, dims: spec.shape, data: state.m.get(spec.name) ?? zeros(dtype, size) };
      feeds[TRAIN_IO.v(spec.name)] = { dtype, dims: spec.shape, data: state.v.get(spec.name) ?? zeros(dtype, size) };
    }
    // One micro-batch: loss, gradients and the optimizer step in one session; else the gradients are
    // accumulated first and fed to the optimizer graph.
    const fused = p.microBatches.length === 1;
    const accumulated = fused ? undefined : await accumulateGradients(model, sessions, state.params, p, signal);
    await checkAbort(signal);
    const session = await sessions.get(fused ? { kind: 'fused', options: { loss: p.loss, optimizer: p.optimizer } } : { kind: 'optimizer', options: p.optimizer });
    await checkAbort(signal);
    if (accumulated) for (const spec of specs) feeds[TRAIN_IO.grad(spec.name)] = { dtype, dims: spec.shape, data: accumulated.grads.get(spec.name)! };
    else Object.assign(feeds, model.frozen ? weightFeeds(dtype, model.frozen) : {}, p.microBatches[0]);
    releaseUnreferencedOutputs();
    const out = await session.run(feeds);
    const loss = accumulated ? accumulated.loss : Number(out[TRAIN_IO.loss]!.data[0]);
    if (!Number.isFinite(loss)) throw new NonFiniteUpdateError(update, 'loss', loss);
    const gradNorm = Number(out[TRAIN_IO.gradNorm]!.data[0]);
    if (!Number.isFinite(gradNorm)) throw new NonFiniteUpdateError(update, 'gradient norm', gradNorm);
    const params = new Map<string, FloatArray>();
    const m = new Map<string, FloatArray>();
    const v = new Map<string, FloatArray>();
    for (const spec of specs) {
      params.set(spec.name, out[TRAIN_IO.newParam(spec.name)]!.data as FloatArray);
      m.set(spec.name, out[TRAIN_IO.newM(spec.name)]!.data as FloatArray);
      v.set(spec.name, out[TRAIN_IO.newV(spec.name)]!.data as FloatArray);
    }
    state = { params, m, v, step: update };
    results.push({ loss, gradNorm, step: update, tokens: p.tokens, microBatches: p.microBatches.length });
    onProgress?.(results.length);
  }
  await checkAbort(signal);
  return { state, results };
}
