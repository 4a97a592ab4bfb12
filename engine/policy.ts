// The policy engine: one model's state (parameters, AdamW moments and step, the frozen reference policy,
// the identity tag) and scoring, generation and training composed over it. The state is one record
// that is replaced, never edited, so a load or a sequence of updates lands whole or not at all.
import { copyAs, type FloatArray, type FloatDType } from './batching.js';
import { EngineInputError, PolicyTagMismatchError } from './errors.js';
import { Generator, type GenerateOptions, type GenerateRequest, type GenerateResult } from './generation.js';
import type { ModelConfig } from './model/config.js';
import { elementCount, initParameters, parameterSpecs } from './model/params.js';
import type { OrtSession, SessionOptions } from './ort.js';
import type { SamplingOptions } from './sampling.js';
import { createScoreSession, scoreBatch, type ScoreOptions, type ScoreRequest, type ScoreResult } from './scoring.js';
import { decodeOptimizer, decodeParameters, encodeOptimizer, encodeParameters, type OptimizerTensors } from './state-files.js';
import { runUpdates, TrainSessions, type AdamState, type TrainSequence, type TrainStep, type TrainStepOptions, type TrainStepResult } from './training.js';

export type { FloatArray } from './batching.js';
export type { GenerateOptions, GenerateRequest, GenerateResult } from './generation.js';
export type { ScoreOptions, ScoreRequest, ScoreResult } from './scoring.js';
export type { TrainSequence, TrainStep, TrainStepOptions, TrainStepResult } from './training.js';
export { OPTIMIZER_STEP_TENSOR } from './state-files.js';
export { EngineAbortError, EngineInputError, EngineThreadError, NonFiniteUpdateError, PolicyTagMismatchError } from './errors.js';

export interface EngineOptions extends SessionOptions {
  /** float32 for real work; float64 for gradient checks. */
  dtype?: FloatDType;
}

/** Which policy version the engine holds: set by whoever loads or advances the state, checked by whoever relies on it. */
export interface PolicyTag {
  runId: string;
  configHash: string;
  step: number;
}

/** A whole engine state as files (see engine/state-files.ts for the formats). */
export interface PolicyStateFiles {
  parameters: Uint8Array;
  /** null: a fresh optimizer (zero moments, step 0). */
  optimizer: Uint8Array | null;
  /** The frozen reference policy's parameters (the KL anchor); null: the loaded parameters. */
  reference: Uint8Array | null;
  tag: PolicyTag;
}

export interface TrainOptions {
  /** Checked between session runs: an abort rejects with EngineAbortError and changes nothing. */
  signal?: AbortSignal;
  /** The tag the state must have, or the call fails with PolicyTagMismatchError and changes nothing. */
  expect?: PolicyTag;
  /** The tag the state gets when every update has succeeded. */
  next?: PolicyTag;
  /** Called after each update is computed (not yet committed) with the number computed so far. */
  onProgress?: (updates: number) => void;
}

export function sameTag(a: PolicyTag | undefined, b: PolicyTag | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.runId === b.runId && a.configHash === b.configHash && a.step === b.step);
}

function checkedTag(tag: PolicyTag, what: string): PolicyTag {
  const raw: unknown = tag;
  if (typeof raw !== 'object' || raw === null) throw new EngineInputError(`${what} must be an object { runId, configHash, step }`);
  const { runId, configHash, step } = tag;
  if (typeof runId !== 'string' || runId === '') throw new EngineInputError(`${what}: runId must be a non-empty string, got ${JSON.stringify(runId)}`);
  if (typeof configHash !== 'string' || configHash === '') throw new EngineInputError(`${what}: configHash must be a non-empty string, got ${JSON.stringify(configHash)}`);
  if (!Number.isSafeInteger(step)) throw new EngineInputError(`${what}: step must be an integer, got ${JSON.stringify(step)}`);
  // A copy, so the caller cannot change the engine's tag by editing its object.
  return { runId, configHash, step };
}

/**
 * Maps and arrays in here are never written after they are stored: updates, loads and conversions
 * all build new ones. That is what makes the reference snapshot a plain reference to the parameter
 * map, a failed update a matter of not storing its result, and map identity a staleness test for
 * sessions with baked-in weights.
 */
interface EngineState extends AdamState {
  reference: ReadonlyMap<string, FloatArray>;
  tag: PolicyTag | undefined;
}

export class PolicyEngine {
  readonly dtype: FloatDType;
  private state: EngineState;
  private scoreSession?: Promise<OrtSession>;
  private readonly generator: Generator;
  private readonly trainSessions: TrainSessions;
  private readonly sessionOptions: SessionOptions;

  private constructor(
    readonly config: ModelConfig,
    params: ReadonlyMap<string, FloatArray>,
    options: EngineOptions,
  ) {
    this.dtype = options.dtype ?? 'float32';
    this.sessionOptions = { optimization: this.dtype === 'float64' ? 'basic' : 'all', ...options };
    const own = new Map<string, FloatArray>();
    for (const spec of parameterSpecs(config)) {
      const p = params.get(spec.name);
      if (!p) throw new EngineInputError(`parameter ${spec.name} is missing`);
      if (p.length !== elementCount(spec.shape)) throw new EngineInputError(`parameter ${spec.name} has ${p.length} values, expected shape [${spec.shape.join(', ')}]`);
      own.set(spec.name, copyAs(this.dtype, p));
    }
    // Until a reference is frozen or loaded, the KL anchor is the policy the engine started from.
    this.state = { params: own, m: new Map(), v: new Map(), step: 0, reference: own, tag: undefined };
    this.generator = new Generator(config, this.dtype, this.sessionOptions);
    this.trainSessions = new TrainSessions(config, this.sessionOptions);
  }

  static fromParameters(config: ModelConfig, params: ReadonlyMap<string, FloatArray>, options: EngineOptions = {}): PolicyEngine {
    return new PolicyEngine(config, params, options);
  }

  /** A new model initialised deterministically from `seed`. */
  static initialise(config: ModelConfig, seed: number, options: EngineOptions = {}): PolicyEngine {
    return new PolicyEngine(config, initParameters(config, seed), options);
  }

  /** Optimizer updates applied so far. */
  get step(): number {
    return this.state.step;
  }

  get tag(): PolicyTag | undefined {
    return this.state.tag && { ...this.state.tag };
  }

  setTag(tag: PolicyTag | undefined): void {
    this.state = { ...this.state, tag: tag === undefined ? undefined : checkedTag(tag, 'tag') };
  }

  /** The engine's own arrays, shared with the reference snapshot: read them, never write them. */
  parameters(): ReadonlyMap<string, FloatArray> {
    return this.state.params;
  }

  /** Log-probs and ranks of ids[targetStart..] for each sequence, given everything before each token. */
  async score(requests: readonly ScoreRequest[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const policy = options.policy ?? 'current';
    if (policy !== 'current' && policy !== 'reference') throw new EngineInputError(`score policy must be 'current' or 'reference', got ${JSON.stringify(policy)}`);
    const params = policy === 'reference' ? this.state.reference : this.state.params;
    const session = (): Promise<OrtSession> => (this.scoreSession ??= createScoreSession(this.config, this.dtype, this.sessionOptions));
    return scoreBatch(session, this.config, this.dtype, params, requests, options.signal);
  }

  /**
   * Samples a continuation of every prompt. Each sequence's draws are keyed by its own SampleKey, so
   * its tokens do not depend on the rest of the batch, on batch size, or on retries.
   */
  generate(requests: readonly GenerateRequest[], sampling: Partial<SamplingOptions> = {}, options: GenerateOptions = {}): Promise<GenerateResult[]> {
    return this.generator.generate(this.state.params, requests, sampling, options);
  }

  /**
   * Runs the updates in order and commits all of them with tag `next`, or none: on a tag mismatch,
   * a bad batch, an abort or a non-finite loss or gradient norm, the engine is exactly as before.
   */
  async train(steps: readonly TrainStep[], opts: TrainOptions = {}): Promise<TrainStepResult[]> {
    const start = this.state;
    if (opts.expect !== undefined && !sameTag(checkedTag(opts.expect, 'expected tag'), start.tag)) throw new PolicyTagMismatchError({ ...opts.expect }, start.tag && { ...start.tag });
    const next = opts.next === undefined ? start.tag : checkedTag(opts.next, 'next tag');
    const { state, results } = await runUpdates(this.config, this.dtype, this.trainSessions, start, steps, opts.signal, opts.onProgress);
    // The updates were computed from `start`; committing them over anything else would lose a change.
    if (this.state !== start) throw new Error('the engine state changed while train() ran (engine calls must not overlap); nothing was committed');
    this.state = { ...state, reference: start.reference, tag: next };
    return results;
  }

  /** One optimizer step on the batch; returns the loss before the update. */
  async trainStep(sequences: readonly TrainSequence[], options: TrainStepOptions, opts: TrainOptions = {}): Promise<TrainStepResult> {
    const [result] = await this.train([{ sequences, options }], opts);
    return result!;
  }

  /** The current parameters become the reference policy (the KL anchor) until the next freeze or load. */
  freezeReferencePolicy(): void {
    // No copy: the parameter map and its arrays are never written after they are stored (see EngineState).
    this.state = { ...this.state, reference: this.state.params };
  }

  /** Zero moments and step 0, e.g. between the SFT warm start and GRPO. */
  resetOptimizer(): void {
    this.state = { ...this.state, m: new Map(), v: new Map(), step: 0 };
  }

  /** Replaces parameters, optimizer state, reference and tag together, after every file has been checked. */
  loadState(files: PolicyStateFiles): void {
    const tag = checkedTag(files.tag, 'tag');
    const params = decodeParameters(files.parameters, this.config, this.dtype, 'model.safetensors');
    const optimizer: OptimizerTensors = files.optimizer === null ? { m: new Map(), v: new Map(), step: 0 } : decodeOptimizer(files.optimizer, this.config, this.dtype, 'optimizer.safetensors');
    const reference = files.reference === null ? params : decodeParameters(files.reference, this.config, this.dtype, 'reference.safetensors');
    this.state = { params, ...optimizer, reference, tag };
  }

  /** The parameters as safetensors bytes with Hugging Face names. */
  exportParameters(): Uint8Array {
    return encodeParameters(this.config, this.state.params);
  }

  /** The reference policy's parameters, in the same format as exportParameters. */
  exportReferencePolicy(): Uint8Array {
    return encodeParameters(this.config, this.state.reference);
  }

  /** AdamW moments (prefixed names) and the step count as safetensors bytes. */
  exportOptimizer(): Uint8Array {
    return encodeOptimizer(this.config, this.dtype, this.state);
  }

  /** Replaces the parameters only (every parameter must be present with its shape); reference and tag stay. */
  importParameters(bytes: Uint8Array, source = 'model.safetensors'): void {
    this.state = { ...this.state, params: decodeParameters(bytes, this.config, this.dtype, source) };
  }

  /** Replaces the moments and step only, after the whole file has been checked. */
  importOptimizer(bytes: Uint8Array, source = 'optimizer.safetensors'): void {
    this.state = { ...this.state, ...decodeOptimizer(bytes, this.config, this.dtype, source) };
  }

  async release(): Promise<void> {
    const score = this.scoreSession;
    this.scoreSession = undefined;
    if (score) await (await score).release();
    await this.generator.release();
    await this.trainSessions.release();
  }
}
