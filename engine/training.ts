// Training updates: checking a batch and turning it into train-graph feeds (masks, GRPO inputs, AdamW
// bias corrections), a bounded cache of train sessions, and running a sequence of updates on copies of
// the optimizer state, so the engine commits all of them or none.
import { AGGREGATIONS } from '../dro/grpo.js';
import { paddedFeeds, scalarFeed, weightFeeds, type Weights } from './batching.js';
import { zeros, type FloatArray, type FloatDType } from './float-arrays.js';
import { EngineInputError, NonFiniteUpdateError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import type { LoraConfig } from './model/lora.js';
import type { ParamSpec } from './model/params.js';
import { buildTrainGraph, TRAIN_IO, type TrainGraphOptions } from './model/train-graph.js';
import { OrtSession, type SessionOptions, type TensorData } from './ort.js';

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
 * An update's options: the train graph's (less its float type), the learning rate and truncation masking.
 * Every field is required: the run config owns the defaults, not the engine. An SFT update ignores the
 * GRPO fields (clip range, KL weight, aggregation, the Dr. GRPO divisor). The divisor should be a fixed
 * budget (the rollout's max new tokens): every new value builds another train session.
 */
export interface TrainStepOptions extends Omit<TrainGraphOptions, 'dtype'> {
  learningRate: number;
  /** A truncated sequence contributes no tokens. */
  maskTruncated: boolean;
}

const NUMBER_OPTIONS = ['epsilonLow', 'epsilonHigh', 'klBeta', 'maxGradNorm', 'beta1', 'beta2', 'epsilon', 'weightDecay'] as const;

export interface TrainStepResult {
  loss: number;
  gradNorm: number;
  /** Optimizer steps taken so far. */
  step: number;
  tokens: number;
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
  graph: TrainGraphOptions;
  /** Batch feeds: everything except parameters, moments and the step-dependent scalars. */
  feeds: Record<string, TensorData>;
  learningRate: number;
  tokens: number;
}

/** Graph options for a batch. Fields a graph does not use are pinned, so they never split the session cache. */
export function trainGraphOptions(dtype: FloatDType, sequences: readonly TrainSequence[], options: TrainStepOptions): TrainGraphOptions {
  const grpo = options.loss === 'grpo';
  const { aggregation, maxCompletionLength: budget } = options;
  const longest = Math.max(1, ...sequences.map((s) => s.ids.length - s.completionStart));
  if (grpo && (!Number.isInteger(budget) || budget < longest)) {
    throw new EngineInputError(`maxCompletionLength ${budget} must be an integer of at least the longest completion (${longest} tokens)`);
  }
  return {
    dtype,
    loss: options.loss,
    epsilonLow: grpo ? options.epsilonLow : 0,
    epsilonHigh: grpo ? options.epsilonHigh : 0,
    klBeta: grpo ? options.klBeta : 0,
    aggregation: grpo ? aggregation : 'token-mean',
    maxCompletionLength: grpo && aggregation === 'dr-grpo' ? budget : 1,
    maxGradNorm: options.maxGradNorm,
    beta1: options.beta1,
    beta2: options.beta2,
    epsilon: options.epsilon,
    weightDecay: options.weightDecay,
  };
}

function prepareUpdate(config: ModelConfig, dtype: FloatDType, sequences: readonly TrainSequence[], options: TrainStepOptions): PreparedUpdate {
  if (options.loss !== 'grpo' && options.loss !== 'sft') throw new EngineInputError(`loss must be 'grpo' or 'sft', got ${JSON.stringify(options.loss)}`);
  if (!Number.isFinite(options.learningRate) || options.learningRate < 0) throw new EngineInputError(`learningRate must be a finite number ≥ 0, got ${options.learningRate}`);
  // No field has a default here, so a missing one is named rather than fed to the graph as NaN.
  for (const name of NUMBER_OPTIONS) if (!Number.isFinite(options[name])) throw new EngineInputError(`${name} must be a finite number, got ${options[name]}`);
  if (!AGGREGATIONS.includes(options.aggregation)) throw new EngineInputError(`aggregation must be one of ${AGGREGATIONS.join(', ')}, got ${JSON.stringify(options.aggregation)}`);
  if (typeof options.maskTruncated !== 'boolean') throw new EngineInputError(`maskTruncated must be a boolean, got ${JSON.stringify(options.maskTruncated)}`);
  sequences.forEach((s, b) => {
    if (!Number.isInteger(s.completionStart) || s.completionStart < 1 || s.completionStart > s.ids.length) {
      throw new EngineInputError(`sequence ${b}: completionStart ${s.completionStart} must be in 1..${s.ids.length}`);
    }
  });
  const { feeds, length } = paddedFeeds(config, dtype, sequences.map((s) => s.ids), 'right');
  const graph = trainGraphOptions(dtype, sequences, options);
  const grpo = options.loss === 'grpo';
  const B = sequences.length;
  const width = length - 1;
  const completionMask = zeros(dtype, B * width);
  const advantages = zeros(dtype, B);
  const oldLogp = zeros(dtype, B * width);
  const refLogp = zeros(dtype, B * width);
  let tokens = 0;
  sequences.forEach((s, b) => {
    const n = s.ids.length - s.completionStart;
    const counted = !(s.truncated && options.maskTruncated);
    if (grpo) {
      if (s.advantage === undefined || s.oldLogprobs?.length !== n || s.referencePolicyLogprobs?.length !== n) {
        throw new EngineInputError(`sequence ${b}: GRPO needs an advantage and ${n} old and reference-policy log-probs (one per completion token)`);
      }
      advantages[b] = s.advantage;
    }
    for (let j = 0; j < n; j++) {
      // Target index t predicts ids[t + 1]: completion token j is target completionStart − 1 + j.
      const t = b * width + s.completionStart - 1 + j;
      completionMask[t] = counted ? 1 : 0;
      if (grpo) {
        oldLogp[t] = s.oldLogprobs![j]!;
        refLogp[t] = s.referencePolicyLogprobs![j]!;
      }
    }
    if (counted) tokens += n;
  });
  feeds[TRAIN_IO.completionMask] = { dtype, dims: [B, width], data: completionMask };
  if (grpo) {
    feeds[TRAIN_IO.advantages] = { dtype, dims: [B], data: advantages };
    feeds[TRAIN_IO.oldLogprobs] = { dtype, dims: [B, width], data: oldLogp };
    feeds[TRAIN_IO.refLogprobs] = { dtype, dims: [B, width], data: refLogp };
  }
  return { graph, feeds, learningRate: options.learningRate, tokens };
}

/**
 * Train sessions by graph options, least recently used first. A run alternates between very few
 * option sets (an SFT warm start, then GRPO), so a handful bounds memory without rebuilding.
 */
export class TrainSessions {
  private readonly sessions = new Map<string, Promise<OrtSession>>();

  constructor(
    private readonly config: ModelConfig,
    private readonly sessionOptions: SessionOptions,
    readonly capacity = 3,
    /** Train LoRA adapters instead of every parameter. */
    private readonly lora?: LoraConfig,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  async get(options: TrainGraphOptions): Promise<OrtSession> {
    const key = JSON.stringify(options);
    let session = this.sessions.get(key);
    if (session) this.sessions.delete(key);
    else {
      session = OrtSession.create(buildTrainGraph(this.config, options, this.lora).toModelBytes(), { ...this.sessionOptions, memoryPattern: false });
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
  const frozen = model.frozen ? weightFeeds(dtype, model.frozen) : {};
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
    await checkAbort(signal);
    const session = await sessions.get(p.graph);
    await checkAbort(signal);
    const update = state.step + 1;
    const feeds: Record<string, TensorData> = {
      ...frozen,
      ...weightFeeds(dtype, { specs, values: state.params }),
      ...p.feeds,
      [TRAIN_IO.learningRate]: scalarFeed(dtype, p.learningRate),
      [TRAIN_IO.biasCorrection1]: scalarFeed(dtype, 1 - Math.pow(p.graph.beta1, update)),
      [TRAIN_IO.biasCorrection2]: scalarFeed(dtype, 1 - Math.pow(p.graph.beta2, update)),
    };
    for (const spec of specs) {
      const size = state.params.get(spec.name)!.length;
      feeds[TRAIN_IO.m(spec.name)] = { dtype, dims: spec.shape, data: state.m.get(spec.name) ?? zeros(dtype, size) };
      feeds[TRAIN_IO.v(spec.name)] = { dtype, dims: spec.shape, data: state.v.get(spec.name) ?? zeros(dtype, size) };
    }
    const out = await session.run(feeds);
    const loss = Number(out[TRAIN_IO.loss]!.data[0]);
    const gradNorm = Number(out[TRAIN_IO.gradNorm]!.data[0]);
    if (!Number.isFinite(loss)) throw new NonFiniteUpdateError(update, 'loss', loss);
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
    results.push({ loss, gradNorm, step: update, tokens: p.tokens });
    onProgress?.(results.length);
  }
  await checkAbort(signal);
  return { state, results };
}
