// The policy engine: one model's state (parameters, AdamW moments and step, the frozen reference policy,
// the identity tag) and scoring, generation and training composed over it. The state is one record
// that is replaced, never edited, so a load or a sequence of updates lands whole or not at all. Under
// LoRA the trained parameters are the adapters; the base weights are frozen beside the state.
import { createHash } from 'node:crypto';
import type { Weights } from './batching.js';
import { copyAs, type FloatArray, type FloatDType } from './float-arrays.js';
import type { EngineApi, PolicyStateFiles, TrainOptions } from './api.js';
import { EngineInputError, PolicyTagMismatchError, type PolicyTag } from './errors.js';
import { Generator, type GenerateRequest, type GenerateResult, type TimedGenerateOptions } from './generation.js';
import type { ModelConfig } from './model/config.js';
import { ADAPTER_WEIGHTS_FILE, adapterSpecs, checkLoraConfig, initAdapters, LoraError, mergeAdapters, type LoraConfig } from './model/lora.js';
import { elementCount, initParameters, parameterSpecs, type ParamSpec } from './model/params.js';
import { decodeAdapters, decodeOptimizer, decodeParameters, encodeAdapters, encodeOptimizer, encodeParameters, type OptimizerTensors } from './model/state-files.js';
import type { OrtSession, SessionOptions } from './ort.js';
import type { SamplingOptions } from './sampling.js';
import { createScoreSession, scoreBatch, type ScoreGraphKind, type ScoreOptions, type ScoreRequest, type ScoreResult } from './scoring.js';
import { runUpdates, TrainSessions, type AdamState, type TrainStep, type TrainStepResult } from './training.js';

export interface EngineOptions extends SessionOptions {
  /** float32 for real work; float64 for gradient checks. */
  dtype?: FloatDType;
  /** Train LoRA adapters on the frozen loaded weights instead of every weight. */
  lora?: EngineLora;
}

export interface EngineLora extends LoraConfig {
  /** Keys the adapters' initialisation (the run seed). */
  seed: number;
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

export class PolicyEngine implements EngineApi {
  readonly dtype: FloatDType;
  private state: EngineState;
  private readonly scoreSessions = new Map<ScoreGraphKind, Promise<OrtSession>>();
  private readonly generator: Generator;
  private readonly trainSessions: TrainSessions;
  private readonly sessionOptions: SessionOptions;
  /** Under LoRA: the adapters' shape settings (scale = alpha / rank). */
  readonly lora: LoraConfig | undefined;
  /** Under LoRA: the frozen base weights, fed beside the adapters to every session. */
  private readonly base: ReadonlyMap<string, FloatArray> | undefined;
  /** The tensors training changes: every parameter, or the adapters. */
  private readonly trained: readonly ParamSpec[];
  /** The base with the current adapters merged in, for generation; rebuilt when the adapters change. */
  private merged?: { adapters: ReadonlyMap<string, FloatArray>; params: ReadonlyMap<string, FloatArray> };
  private baseSha256?: string;

  private constructor(
    readonly config: ModelConfig,
    params: ReadonlyMap<string, FloatArray>,
    options: EngineOptions,
  ) {
    const { lora, ...sessionOptions } = options;
    this.dtype = options.dtype ?? 'float32';
    this.sessionOptions = { optimization: this.dtype === 'float64' ? 'basic' : 'all', ...sessionOptions };
    const own = new Map<string, FloatArray>();
    for (const spec of parameterSpecs(config)) {
      const p = params.get(spec.name);
      if (!p) throw new EngineInputError(`parameter ${spec.name} is missing`);
      if (p.length !== elementCount(spec.shape)) throw new EngineInputError(`parameter ${spec.name} has ${p.length} values, expected shape [${spec.shape.join(', ')}]`);
      own.set(spec.name, copyAs(this.dtype, p));
    }
    let trained: ReadonlyMap<string, FloatArray> = own;
    if (lora) {
      try {
        checkLoraConfig(lora, 'LoRA');
      } catch (err) {
        if (err instanceof LoraError) throw new EngineInputError(err.message, { cause: err });
        throw err;
      }
      if (!Number.isSafeInteger(lora.seed)) throw new EngineInputError(`LoRA: seed must be a safe integer, got ${lora.seed}`);
      this.lora = { rank: lora.rank, alpha: lora.alpha, targets: [...lora.targets] };
      this.base = own;
      trained = new Map([...initAdapters(config, this.lora, lora.seed)].map(([name, a]) => [name, copyAs(this.dtype, a)]));
    }
    this.trained = this.lora ? adapterSpecs(config, this.lora) : parameterSpecs(config);
    // Until a reference is frozen or loaded, the KL anchor is the policy the engine started from: under
    // LoRA the base itself, since B = 0 at init.
    this.state = { params: trained, m: new Map(), v: new Map(), step: 0, reference: trained, tag: undefined };
    this.generator = new Generator(config, this.dtype, this.sessionOptions);
    this.trainSessions = new TrainSessions(config, this.sessionOptions, this.trained, undefined, this.lora);
  }

  static fromParameters(config: ModelConfig, params: ReadonlyMap<string, FloatArray>, options: EngineOptions): PolicyEngine {
    return new PolicyEngine(config, params, options);
  }

  /** A new model initialised deterministically from `seed`. */
  static initialise(config: ModelConfig, seed: number, options: EngineOptions): PolicyEngine {
    return new PolicyEngine(config, initParameters(config, seed), options);
  }

  /** Optimizer updates applied so far (not the training step of the policy tag). */
  get optimizerSteps(): number {
    return this.state.step;
  }

  tag(): PolicyTag | undefined {
    return this.state.tag && { ...this.state.tag };
  }

  setTag(tag: PolicyTag | undefined): void {
    this.state = { ...this.state, tag: tag === undefined ? undefined : checkedTag(tag, 'tag') };
  }

  /** The trained parameters (every one, or the LoRA adapters), shared with the reference snapshot: read them, never write them. */
  parameters(): ReadonlyMap<string, FloatArray> {
    return this.state.params;
  }

  /** What every session is fed for the trained tensors `trained`: under LoRA the frozen base beside them. */
  private weights(trained: ReadonlyMap<string, FloatArray>): Weights {
    if (!this.base) return { specs: this.trained, values: trained };
    return { specs: [...parameterSpecs(this.config), ...this.trained], values: new Map([...this.base, ...trained]) };
  }

  /** The model's full weights for `trained`: the parameters, or the base with the adapters merged in. */
  private modelParameters(trained: ReadonlyMap<string, FloatArray>): ReadonlyMap<string, FloatArray> {
    if (!this.lora || !this.base) return trained;
    if (this.merged?.adapters !== trained) this.merged = { adapters: trained, params: mergeAdapters(this.config, this.lora, this.base, trained) };
    return this.merged.params;
  }

  /** Log-probs and ranks of ids[targetStart..] for each sequence, given everything before each token. */
  async score(requests: readonly ScoreRequest[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const policy = options.policy ?? 'current';
    if (policy !== 'current' && policy !== 'reference') throw new EngineInputError(`score policy must be 'current' or 'reference', got ${JSON.stringify(policy)}`);
    const params = policy === 'reference' ? this.state.reference : this.state.params;
    const session = (kind: ScoreGraphKind): Promise<OrtSession> => {
      let ready = this.scoreSessions.get(kind);
      if (!ready) {
        const created = createScoreSession(this.config, this.dtype, this.sessionOptions, this.lora, kind);
        // A failed build must not stay cached as a permanent failure.
        created.catch(() => this.scoreSessions.get(kind) === created && this.scoreSessions.delete(kind));
        this.scoreSessions.set(kind, (ready = created));
      }
      return ready;
    };
    return scoreBatch(session, this.config, this.dtype, this.weights(params), requests, options);
  }

  /**
   * Samples a continuation of every prompt. Each sequence's draws are keyed by its own SampleKey, so
   * its tokens do not depend on the rest of the batch, on batch size, or on retries. Under LoRA it samples
   * from the merged weights (W + scale·B·A, the same model up to rounding): the cached path bakes weights
   * into its sessions, and a merged projection costs no more than the base one. Training never reads these
   * log-probs (the GRPO old log-probs come from score), so the rounding difference cannot reach an update.
   */
  generate(requests: readonly GenerateRequest[], sampling: SamplingOptions, options: TimedGenerateOptions = {}): Promise<GenerateResult[]> {
    return this.generator.generate(this.modelParameters(this.state.params), requests, sampling, options);
  }

  /**
   * Runs the updates in order and commits all of them with tag `next`, or none: on a tag mismatch,
   * a bad batch, an abort or a non-finite loss or gradient norm, the engine is exactly as before.
   */
  async train(steps: readonly TrainStep[], opts: TrainOptions = {}): Promise<TrainStepResult[]> {
    const start = this.state;
    if (opts.expect !== undefined && !sameTag(checkedTag(opts.expect, 'expected tag'), start.tag)) throw new PolicyTagMismatchError({ ...opts.expect }, start.tag && { ...start.tag });
    const next = opts.next === undefined ? start.tag : checkedTag(opts.next, 'next tag');
    const model = { config: this.config, dtype: this.dtype, trained: this.trained, frozen: this.base && { specs: parameterSpecs(this.config), values: this.base } };
    const { state, results } = await runUpdates(model, this.trainSessions, start, steps, opts.signal, opts.onProgress);
    // The updates were computed from `start`; committing them over anything else would lose a change.
    if (this.state !== start) throw new Error('the engine state changed while train() ran (engine calls must not overlap); nothing was committed');
    this.state = { ...state, reference: start.reference, tag: next };
    return results;
  }

  /**
   * The current parameters become the reference policy (the KL anchor) until the next freeze or load. Under
   * LoRA that is the base with the current adapters: the base itself before any training, the warm-started
   * policy after an SFT warm start, as without LoRA.
   */
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
    const params = this.decodeTrained(files.parameters, this.lora ? ADAPTER_WEIGHTS_FILE : 'model.safetensors');
    const optimizer: OptimizerTensors = files.optimizer === null ? { m: new Map(), v: new Map(), step: 0 } : decodeOptimizer(files.optimizer, this.trained, this.dtype, 'optimizer.safetensors');
    const reference = files.reference === null ? params : this.decodeTrained(files.reference, this.lora ? `reference ${ADAPTER_WEIGHTS_FILE}` : 'reference.safetensors');
    this.state = { params, ...optimizer, reference, tag };
  }

  private decodeTrained(bytes: Uint8Array, source: string): Map<string, FloatArray> {
    return this.lora ? decodeAdapters(bytes, this.config, this.lora, this.dtype, source) : decodeParameters(bytes, this.config, this.dtype, source);
  }

  private encodeTrained(values: ReadonlyMap<string, FloatArray>): Uint8Array {
    return this.lora ? encodeAdapters(this.config, this.lora, values) : encodeParameters(this.config, values);
  }

  /** The trained parameters as safetensors bytes: every parameter (Hugging Face names), or under LoRA adapter_model.safetensors (PEFT names). */
  exportParameters(): Uint8Array {
    return this.encodeTrained(this.state.params);
  }

  /** The reference policy's trained parameters, in the same format as exportParameters. */
  exportReferencePolicy(): Uint8Array {
    return this.encodeTrained(this.state.reference);
  }

  /** The weights training leaves alone under LoRA (the loaded model), or the current parameters without it. */
  exportBaseParameters(): Uint8Array {
    return encodeParameters(this.config, this.base ?? this.state.params);
  }

  /**
   * sha256 of exportBaseParameters() under LoRA: what a LoRA checkpoint records of the base it belongs to.
   * Computed once (the base never changes) from the weights as loaded, so it does not depend on how the
   * files were laid out (one file, shards, GGUF).
   */
  baseDigest(): string {
    if (!this.base) throw new EngineInputError('baseDigest: this engine trains every parameter; only a LoRA engine has a frozen base');
    return (this.baseSha256 ??= createHash('sha256').update(this.exportBaseParameters()).digest('hex'));
  }

  /** AdamW moments of the trained parameters (prefixed names) and the step count as safetensors bytes. */
  exportOptimizer(): Uint8Array {
    return encodeOptimizer(this.trained, this.dtype, this.state);
  }

  async release(): Promise<void> {
    const scoring = [...this.scoreSessions.values()];
    this.scoreSessions.clear();
    for (const session of scoring) await session.then((s) => s.release(), () => undefined);
    await this.generator.release();
    await this.trainSessions.release();
  }
}
