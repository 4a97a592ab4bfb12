// The policy engine: owns a model's parameters and AdamW state, scores token sequences (log-probs and
// ranks of target tokens) and runs training steps, each as one ONNX Runtime session run. Sequences of
// different lengths are right-padded and masked, so a sequence's score does not depend on its batch.
import type { Aggregation } from '../dro/grpo.js';
import { OrtSession, type ArrayData, type SessionOptions, type TensorData } from './ort.js';
import type { DType } from './onnx/graph.js';
import type { ModelConfig } from './model/config.js';
import { elementCount, initParameters, parameterSpecs } from './model/params.js';
import { buildScoreGraph, buildTrainGraph, TRAIN_IO, type TrainGraphOptions } from './model/train-graph.js';
import { buildDecodeGraph, buildPrefillGraph, GENERATE_IO } from './model/generate-graph.js';
import { resolveSamplingOptions, SequenceSampler, type SampleKey, type SamplingOptions } from './sampling.js';
import { decodeSafetensors, encodeSafetensors, tensorFrom, toFloat32, toFloat64, type SafeTensor } from './weights/safetensors.js';

export type FloatArray = Float32Array | Float64Array;

export interface EngineOptions extends SessionOptions {
  /** float32 for real work; float64 for gradient checks. */
  dtype?: 'float32' | 'float64';
}

export interface ScoreRequest {
  ids: number[];
  /** Index of the first target token: scores are returned for ids[targetStart..]. At least 1. */
  targetStart: number;
}

export interface ScoreResult {
  logprobs: number[];
  ranks: number[];
}

export interface TrainSequence {
  ids: number[];
  /** Index of the first completion token; tokens before it are the prompt and carry no loss. */
  completionStart: number;
  /** GRPO only: the sequence's advantage, and per completion token the old and reference log-probs. */
  advantage?: number;
  oldLogprobs?: number[];
  refLogprobs?: number[];
  /** A truncated completion contributes no tokens (when the loss masks truncation). */
  truncated?: boolean;
}

export interface TrainStepOptions {
  loss: 'grpo' | 'sft';
  learningRate: number;
  epsilonLow?: number;
  epsilonHigh?: number;
  klBeta?: number;
  aggregation?: Aggregation;
  maskTruncated?: boolean;
  maxCompletionLength?: number;
  maxGradNorm?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
}

export interface TrainStepResult {
  loss: number;
  gradNorm: number;
  /** Optimizer steps taken so far. */
  step: number;
  tokens: number;
}

export interface GenerateRequest {
  promptIds: number[];
  /** Keys every random draw of this sequence: its tokens depend on nothing else. */
  key: SampleKey;
}

export interface GenerateResult {
  ids: number[];
  /** Log-probability of each generated token under the sampling distribution. */
  logprobs: number[];
  truncated: boolean;
  stopReason: 'stop-token' | 'stop-sequence' | 'max-new-tokens' | null;
}

export interface GenerateOptions {
  /** false: recompute the whole sequence every step (the slow reference path). Default true. */
  useCache?: boolean;
  /** Checked before every decode step: an aborted call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after every decode step with the number of tokens generated so far over the batch. */
  onProgress?: (generated: number) => void;
}

export const OPTIMIZER_STEP_TENSOR = 'optimizer.step';
const M_PREFIX = 'optimizer.adam_m.';
const V_PREFIX = 'optimizer.adam_v.';

export class PolicyEngine {
  private scoreSession?: Promise<OrtSession>;
  private prefillSession?: Promise<OrtSession>;
  private recomputeSession?: Promise<OrtSession>;
  private decodeSession?: Promise<OrtSession>;
  private readonly trainSessions = new Map<string, Promise<OrtSession>>();
  private readonly m = new Map<string, FloatArray>();
  private readonly v = new Map<string, FloatArray>();
  private optimizerStep = 0;
  /** Bumped whenever the parameters change, so sessions with baked-in weights know they are stale. */
  private paramsVersion = 0;
  private generationVersion = -1;
  readonly dtype: DType;
  private readonly sessionOptions: SessionOptions;

  private constructor(
    readonly config: ModelConfig,
    private params: Map<string, FloatArray>,
    private readonly options: EngineOptions,
  ) {
    this.dtype = options.dtype ?? 'float32';
    this.sessionOptions = { optimization: this.dtype === 'float64' ? 'basic' : 'all', ...options };
    for (const spec of parameterSpecs(config)) {
      const p = params.get(spec.name);
      if (!p) throw new Error(`parameter ${spec.name} is missing`);
      if (p.length !== elementCount(spec.shape)) throw new Error(`parameter ${spec.name} has ${p.length} values, expected shape [${spec.shape.join(', ')}]`);
      params.set(spec.name, this.convert(p));
    }
  }

  static fromParameters(config: ModelConfig, params: Map<string, FloatArray>, options: EngineOptions = {}): PolicyEngine {
    return new PolicyEngine(config, new Map(params), options);
  }

  /** A new model initialised deterministically from `seed`. */
  static initialise(config: ModelConfig, seed: number, options: EngineOptions = {}): PolicyEngine {
    return new PolicyEngine(config, initParameters(config, seed), options);
  }

  private convert(a: FloatArray): FloatArray {
    if (this.dtype === 'float64') return a instanceof Float64Array ? a.slice() : Float64Array.from(a);
    return a instanceof Float32Array ? a.slice() : Float32Array.from(a);
  }

  private zeros(n: number): FloatArray {
    return this.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
  }

  /** An AdamW moment, created as zeros on first use: engines that only sample never pay for them. */
  private moment(store: Map<string, FloatArray>, name: string): FloatArray {
    let m = store.get(name);
    if (!m) {
      m = this.zeros(this.params.get(name)!.length);
      store.set(name, m);
    }
    return m;
  }

  get step(): number {
    return this.optimizerStep;
  }

  parameters(): ReadonlyMap<string, FloatArray> {
    return this.params;
  }

  private paramFeeds(): Record<string, TensorData> {
    const feeds: Record<string, TensorData> = {};
    for (const spec of parameterSpecs(this.config)) feeds[spec.name] = { dtype: this.dtype, dims: spec.shape, data: this.params.get(spec.name)! };
    return feeds;
  }

  /** Throws unless every id is inside the vocabulary, naming the first bad one. */
  private checkIds(rows: readonly (readonly number[])[]): void {
    rows.forEach((row, b) =>
      row.forEach((id, t) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocab_size) throw new Error(`token id ${id} at sequence ${b}, position ${t} is outside the vocabulary (0..${this.config.vocab_size - 1})`);
      }),
    );
  }

  /**
   * Pads a batch to its longest row and returns the ids, key-mask and position feeds. Right padding
   * keeps every row's tokens at their natural indices (scoring, training); left padding puts every
   * row's newest token last (generation). Pads are masked and get position 0.
   */
  private paddedFeeds(rows: readonly number[][], side: 'left' | 'right'): { feeds: Record<string, TensorData>; length: number } {
    if (rows.length === 0) throw new Error('empty batch');
    this.checkIds(rows);
    const length = Math.max(...rows.map((s) => s.length));
    if (length > this.config.max_position_embeddings) throw new Error(`sequence of ${length} tokens exceeds max_position_embeddings ${this.config.max_position_embeddings}`);
    const B = rows.length;
    const ids = new BigInt64Array(B * length);
    const positions = new BigInt64Array(B * length);
    const mask = this.zeros(B * length);
    rows.forEach((row, b) => {
      const offset = b * length + (side === 'left' ? length - row.length : 0);
      row.forEach((id, t) => {
        ids[offset + t] = BigInt(id);
        positions[offset + t] = BigInt(t);
        mask[offset + t] = 1;
      });
    });
    return {
      length,
      feeds: {
        ids: { dtype: 'int64', dims: [B, length], data: ids },
        key_mask: { dtype: this.dtype, dims: [B, length], data: mask },
        positions: { dtype: 'int64', dims: [B, length], data: positions },
      },
    };
  }

  /** Log-probs and ranks of ids[targetStart..] for each sequence, given everything before each token. */
  async score(requests: readonly ScoreRequest[]): Promise<ScoreResult[]> {
    for (const [i, r] of requests.entries()) {
      if (!Number.isInteger(r.targetStart) || r.targetStart < 1 || r.targetStart > r.ids.length) {
        throw new Error(`score request ${i}: targetStart ${r.targetStart} must be in 1..${r.ids.length}`);
      }
    }
    this.scoreSession ??= OrtSession.create(buildScoreGraph(this.config, this.dtype).toModelBytes(), this.sessionOptions);
    const session = await this.scoreSession;
    const { feeds, length } = this.paddedFeeds(requests.map((r) => r.ids), 'right');
    const out = await session.run({ ...this.paramFeeds(), ...feeds });
    const logprobs = out.logprobs!.data as FloatArray;
    const ranks = out.ranks!.data as BigInt64Array;
    const width = length - 1;
    return requests.map((r, b) => {
      const from = b * width + r.targetStart - 1;
      const to = b * width + r.ids.length - 1;
      return { logprobs: Array.from(logprobs.subarray(from, to)), ranks: Array.from(ranks.subarray(from, to), Number) };
    });
  }

  /**
   * Samples a continuation of every prompt. Each sequence's draws are keyed by its own SampleKey, so
   * its tokens do not depend on the rest of the batch, on batch size, or on retries.
   */
  async generate(requests: readonly GenerateRequest[], sampling: Partial<SamplingOptions> = {}, options: GenerateOptions = {}): Promise<GenerateResult[]> {
    const o = resolveSamplingOptions(sampling);
    if (requests.length === 0) return [];
    this.checkIds(requests.map((r) => r.promptIds));
    requests.forEach((r, b) => {
      if (r.promptIds.length === 0) throw new Error(`generate request ${b}: the prompt is empty`);
      if (r.promptIds.length + o.maxNewTokens > this.config.max_position_embeddings) {
        throw new Error(`generate request ${b}: ${r.promptIds.length} prompt tokens + ${o.maxNewTokens} new tokens exceed max_position_embeddings ${this.config.max_position_embeddings}`);
      }
    });
    const samplers = requests.map((r) => new SequenceSampler(r.key, o));
    const rows = requests.map((r) => [...r.promptIds]);
    const B = requests.length;
    const V = this.config.vocab_size;
    const useCache = options.useCache ?? true;
    let generated = 0;

    // Samples one token for every unfinished row from logits [B, V]. Returns the token each row feeds
    // next, or undefined for a row that had already finished (it feeds a masked pad).
    const sampleStep = (logits: FloatArray): (number | undefined)[] =>
      samplers.map((sampler, b) => {
        if (sampler.done) return undefined;
        const { token } = sampler.next(logits.subarray(b * V, (b + 1) * V));
        rows[b]!.push(token);
        generated++;
        return token;
      });

    if (!useCache) {
      this.recomputeSession ??= OrtSession.create(buildPrefillGraph(this.config, this.dtype, false).toModelBytes(), this.sessionOptions);
      const session = await this.recomputeSession;
      while (!samplers.every((s) => s.done)) {
        options.signal?.throwIfAborted();
        const out = await session.run({ ...this.paramFeeds(), ...this.paddedFeeds(rows, 'left').feeds });
        sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
        options.onProgress?.(generated);
      }
      return samplers.map((s) => s.result());
    }

    // The cached path bakes the weights into its sessions (pre-packed by ONNX Runtime); they are rebuilt
    // after the weights change.
    if (this.generationVersion !== this.paramsVersion) await this.releaseGenerationSessions();
    this.generationVersion = this.paramsVersion;
    this.prefillSession ??= OrtSession.create(buildPrefillGraph(this.config, this.dtype, true, this.params).toModelBytes(), this.sessionOptions);
    this.decodeSession ??= OrtSession.create(buildDecodeGraph(this.config, this.dtype, this.params).toModelBytes(), this.sessionOptions);
    const [prefill, decode] = await Promise.all([this.prefillSession, this.decodeSession]);
    options.signal?.throwIfAborted();
    const first = this.paddedFeeds(rows, 'left').feeds;
    let out = await prefill.run(first);
    let keyMask = first.key_mask!.data as FloatArray;
    let width = first.ids!.dims[1]!;
    for (;;) {
      const tokens = sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
      options.onProgress?.(generated);
      if (samplers.every((s) => s.done)) break;
      options.signal?.throwIfAborted();
      // The new token's key is visible only for rows that just sampled one; finished rows feed a masked pad.
      const nextMask = this.zeros(B * (width + 1));
      for (let b = 0; b < B; b++) {
        nextMask.set(keyMask.subarray(b * width, (b + 1) * width), b * (width + 1));
        nextMask[b * (width + 1) + width] = tokens[b] === undefined ? 0 : 1;
      }
      const feeds: Record<string, TensorData> = {
        ids: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(tokens, (t) => BigInt(t ?? 0)) },
        positions: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(rows, (r, b) => BigInt(tokens[b] === undefined ? 0 : r.length - 1)) },
        key_mask: { dtype: this.dtype, dims: [B, width + 1], data: nextMask },
      };
      for (let layer = 0; layer < this.config.num_hidden_layers; layer++) {
        feeds[GENERATE_IO.pastKey(layer)] = out[GENERATE_IO.presentKey(layer)]!;
        feeds[GENERATE_IO.pastValue(layer)] = out[GENERATE_IO.presentValue(layer)]!;
      }
      out = await decode.run(feeds);
      keyMask = nextMask;
      width += 1;
    }
    return samplers.map((s) => s.result());
  }

  /** One optimizer step on the batch; returns the loss before the update. */
  async trainStep(sequences: readonly TrainSequence[], options: TrainStepOptions): Promise<TrainStepResult> {
    const graphOptions: TrainGraphOptions = {
      dtype: this.dtype,
      loss: options.loss,
      epsilonLow: options.epsilonLow ?? 0.2,
      epsilonHigh: options.epsilonHigh ?? 0.2,
      klBeta: options.klBeta ?? 0.001,
      aggregation: options.aggregation ?? 'dr-grpo',
      maxCompletionLength: options.maxCompletionLength ?? Math.max(1, ...sequences.map((s) => s.ids.length - s.completionStart)),
      maxGradNorm: options.maxGradNorm ?? 1,
      beta1: options.beta1 ?? 0.9,
      beta2: options.beta2 ?? 0.999,
      epsilon: options.epsilon ?? 1e-8,
      weightDecay: options.weightDecay ?? 0,
    };
    const key = JSON.stringify(graphOptions);
    let sessionPromise = this.trainSessions.get(key);
    if (!sessionPromise) {
      sessionPromise = OrtSession.create(buildTrainGraph(this.config, graphOptions).toModelBytes(), this.sessionOptions);
      this.trainSessions.set(key, sessionPromise);
    }
    const session = await sessionPromise;
    const { feeds, length } = this.paddedFeeds(sequences.map((s) => s.ids), 'right');
    const B = sequences.length;
    const width = length - 1;
    const completionMask = this.zeros(B * width);
    const advantages = this.zeros(B);
    const oldLogp = this.zeros(B * width);
    const refLogp = this.zeros(B * width);
    let tokens = 0;
    sequences.forEach((s, b) => {
      const n = s.ids.length - s.completionStart;
      if (!Number.isInteger(s.completionStart) || s.completionStart < 1 || n < 0) throw new Error(`sequence ${b}: completionStart ${s.completionStart} must be in 1..${s.ids.length}`);
      const counted = !(s.truncated && (options.maskTruncated ?? true));
      if (options.loss === 'grpo') {
        if (s.advantage === undefined || s.oldLogprobs?.length !== n || s.refLogprobs?.length !== n) {
          throw new Error(`sequence ${b}: GRPO needs an advantage and ${n} old and reference log-probs (one per completion token)`);
        }
        advantages[b] = s.advantage;
      }
      for (let j = 0; j < n; j++) {
        // Target index t predicts ids[t + 1]: completion token j is target completionStart − 1 + j.
        const t = b * width + s.completionStart - 1 + j;
        completionMask[t] = counted ? 1 : 0;
        if (options.loss === 'grpo') {
          oldLogp[t] = s.oldLogprobs![j]!;
          refLogp[t] = s.refLogprobs![j]!;
        }
      }
      if (counted) tokens += n;
    });
    const step = this.optimizerStep + 1;
    const scalar = (x: number): TensorData => ({ dtype: this.dtype, dims: [], data: this.dtype === 'float64' ? Float64Array.of(x) : Float32Array.of(x) });
    const run: Record<string, TensorData> = {
      ...this.paramFeeds(),
      ...feeds,
      [TRAIN_IO.completionMask]: { dtype: this.dtype, dims: [B, width], data: completionMask },
      [TRAIN_IO.learningRate]: scalar(options.learningRate),
      [TRAIN_IO.biasCorrection1]: scalar(1 - Math.pow(graphOptions.beta1, step)),
      [TRAIN_IO.biasCorrection2]: scalar(1 - Math.pow(graphOptions.beta2, step)),
    };
    if (options.loss === 'grpo') {
      run[TRAIN_IO.advantages] = { dtype: this.dtype, dims: [B], data: advantages };
      run[TRAIN_IO.oldLogprobs] = { dtype: this.dtype, dims: [B, width], data: oldLogp };
      run[TRAIN_IO.refLogprobs] = { dtype: this.dtype, dims: [B, width], data: refLogp };
    }
    for (const spec of parameterSpecs(this.config)) {
      run[TRAIN_IO.m(spec.name)] = { dtype: this.dtype, dims: spec.shape, data: this.moment(this.m, spec.name) };
      run[TRAIN_IO.v(spec.name)] = { dtype: this.dtype, dims: spec.shape, data: this.moment(this.v, spec.name) };
    }
    const out = await session.run(run);
    for (const spec of parameterSpecs(this.config)) {
      this.params.set(spec.name, out[TRAIN_IO.newParam(spec.name)]!.data as FloatArray);
      this.m.set(spec.name, out[TRAIN_IO.newM(spec.name)]!.data as FloatArray);
      this.v.set(spec.name, out[TRAIN_IO.newV(spec.name)]!.data as FloatArray);
    }
    this.optimizerStep = step;
    this.paramsVersion++;
    return { loss: first(out[TRAIN_IO.loss]!.data), gradNorm: first(out[TRAIN_IO.gradNorm]!.data), step, tokens };
  }

  /** The parameters as safetensors bytes with Hugging Face names. */
  exportParameters(): Uint8Array {
    const tensors = new Map<string, SafeTensor>();
    for (const spec of parameterSpecs(this.config)) tensors.set(spec.name, tensorFrom(this.params.get(spec.name)!, spec.shape));
    return encodeSafetensors(tensors, { format: 'pt' });
  }

  /** AdamW moments (prefixed names) and the step count as safetensors bytes. */
  exportOptimizer(): Uint8Array {
    const tensors = new Map<string, SafeTensor>();
    for (const spec of parameterSpecs(this.config)) {
      tensors.set(M_PREFIX + spec.name, tensorFrom(this.moment(this.m, spec.name), spec.shape));
      tensors.set(V_PREFIX + spec.name, tensorFrom(this.moment(this.v, spec.name), spec.shape));
    }
    tensors.set(OPTIMIZER_STEP_TENSOR, tensorFrom(BigInt64Array.of(BigInt(this.optimizerStep)), []));
    return encodeSafetensors(tensors, { optimizer: 'adamw' });
  }

  /** Replaces the parameters from safetensors bytes (every parameter must be present with its shape). */
  importParameters(bytes: Uint8Array, source = 'model.safetensors'): void {
    const file = decodeSafetensors(bytes, source);
    const next = new Map<string, FloatArray>();
    for (const spec of parameterSpecs(this.config)) next.set(spec.name, this.readTensor(file.tensors.get(spec.name), spec.name, spec.shape, source));
    this.params = next;
    this.paramsVersion++;
  }

  importOptimizer(bytes: Uint8Array, source = 'optimizer.safetensors'): void {
    const file = decodeSafetensors(bytes, source);
    for (const spec of parameterSpecs(this.config)) {
      this.m.set(spec.name, this.readTensor(file.tensors.get(M_PREFIX + spec.name), M_PREFIX + spec.name, spec.shape, source));
      this.v.set(spec.name, this.readTensor(file.tensors.get(V_PREFIX + spec.name), V_PREFIX + spec.name, spec.shape, source));
    }
    const step = file.tensors.get(OPTIMIZER_STEP_TENSOR);
    if (!step || step.dtype !== 'I64') throw new Error(`${source}: ${OPTIMIZER_STEP_TENSOR} (I64 scalar) is missing`);
    this.optimizerStep = Number(new DataView(step.data.buffer, step.data.byteOffset, 8).getBigInt64(0, true));
  }

  private readTensor(t: SafeTensor | undefined, name: string, shape: number[], source: string): FloatArray {
    if (!t) throw new Error(`${source}: tensor ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${source}: tensor ${name} has shape [${t.shape.join(', ')}], the model needs [${shape.join(', ')}]`);
    }
    return this.dtype === 'float64' ? toFloat64(t) : toFloat32(t);
  }

  private async releaseGenerationSessions(): Promise<void> {
    const sessions = [this.prefillSession, this.decodeSession];
    this.prefillSession = this.decodeSession = undefined;
    for (const s of sessions) if (s) await (await s).release();
  }

  async release(): Promise<void> {
    const sessions = [this.scoreSession, this.prefillSession, this.recomputeSession, this.decodeSession, ...this.trainSessions.values()].filter((s): s is Promise<OrtSession> => s !== undefined);
    for (const s of sessions) await (await s).release();
    this.scoreSession = this.prefillSession = this.recomputeSession = this.decodeSession = undefined;
    this.trainSessions.clear();
  }
}

function first(data: ArrayData): number {
  return Number(data[0]);
}
