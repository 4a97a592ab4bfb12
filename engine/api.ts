// The engine's methods, listed once: PolicyEngine implements them in the calling thread, the engine
// thread dispatches them by name (runtime/engine-thread.ts), and EngineClient's type is this list with
// every answer a promise (runtime/engine-client.ts).
import type { PolicyTag } from './errors.js';
import type { GenerateOptions, GenerateRequest, GenerateResult } from './generation.js';
import type { SamplingOptions } from './sampling.js';
import type { ScoreOptions, ScoreRequest, ScoreResult } from './scoring.js';
import type { TrainStep, TrainStepResult } from './training.js';

/** A whole engine state as files (see engine/model/state-files.ts for the formats). */
export interface PolicyStateFiles {
  /** The trained parameters: model.safetensors, or under LoRA adapter_model.safetensors. */
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

export interface EngineApi {
  /** Samples a continuation of every prompt, each keyed by its own SampleKey (see PolicyEngine.generate). */
  generate(requests: readonly GenerateRequest[], sampling: SamplingOptions, options?: GenerateOptions): Promise<GenerateResult[]>;
  /** Log-probs and ranks of ids[targetStart..] for each sequence, given everything before each token. */
  score(requests: readonly ScoreRequest[], options?: ScoreOptions): Promise<ScoreResult[]>;
  /** Runs the updates in order and commits all of them, or none (see PolicyEngine.train). */
  train(steps: readonly TrainStep[], options?: TrainOptions): Promise<TrainStepResult[]>;
  tag(): PolicyTag | undefined;
  setTag(tag: PolicyTag | undefined): void;
  /** Replaces parameters, optimizer state, reference and tag together, after every file has been checked. */
  loadState(files: PolicyStateFiles): void;
  /** The current parameters become the reference policy (the KL anchor). */
  freezeReferencePolicy(): void;
  /** Zero moments and step 0. */
  resetOptimizer(): void;
  exportParameters(): Uint8Array;
  exportOptimizer(): Uint8Array;
  exportReferencePolicy(): Uint8Array;
  exportBaseParameters(): Uint8Array;
  /** Under LoRA: sha256 of the frozen base weights. */
  baseDigest(): string;
  /** Releases the engine's sessions and helper thread; the engine is not used afterwards. */
  release(): Promise<void>;
}

/** EngineApi as another thread sees it: the same methods, each answering with a promise. */
export type RemoteEngineApi = { [K in keyof EngineApi]: (...args: Parameters<EngineApi[K]>) => Promise<Awaited<ReturnType<EngineApi[K]>>> };
