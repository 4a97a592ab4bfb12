// The small JSON that crosses the wire between the trainingRun workflow and its activities: run
// references, step inputs and per-phase summaries. Tensors and token lists never travel this way; they
// live in the store under deterministic keys (activities/records.ts).
import type { RunConfig } from '../dro/config.js';
import type { HyperparameterChange } from '../dro/hyperparameters.js';
import type { ConfigChange } from '../dro/resumable.js';
import type { SamplerCursor } from '../datasets/sampler.js';
import type { PolicyTag } from '../engine/index.js';

/** What every activity needs to find a run: its name, its validated config and the config's hash. */
export interface RunRef {
  runId: string;
  /** The config the run started with (or was resumed with); a step's own is `configAt(config, hyperparameters, step)`. */
  config: RunConfig;
  configHash: string;
  /** Hyper-parameter changes received while the run trained (`dro set`), in the order received. */
  hyperparameters?: HyperparameterChange[];
  /** The config changes of the run's resumes (`dro resume --config`), in order; `config` has them applied. */
  configChanges?: ConfigChange[];
}

/**
 * The version of the policy state an activity expects the pinned worker to hold: the engine's own tag.
 * Its step counts training steps applied: -1 = freshly initialised (before the warm start), 0 = the base.
 */
export type PolicyVersion = PolicyTag;

/**
 * A policy version published to the run's store by the trainer (activities/policy-versions.ts): the
 * trained weights after `step` training steps (under LoRA only the adapters), named by their sha256. A
 * unit names the version it needs; a worker that does not hold it loads it from there.
 */
export interface PublishedPolicy {
  step: number;
  sha256: string;
  bytes: number;
  /** Under LoRA: sha256 of the base the adapters belong to (PolicyEngine.baseDigest); null otherwise. */
  base: string | null;
}

/** One unit of a step's rollouts or reference scoring (dro/units.ts), computed on the policy of step − 1. */
export interface UnitInput {
  step: number;
  unit: number;
  policy: PublishedPolicy;
}

/**
 * Which batch a unit belongs to: a training step's (its prompts, in plan order) or a filtering round's
 * (its candidates follow from the round; the policy is that of the step the round runs after).
 */
export type UnitBatch = { exampleIds: string[] } | { round: number };

export type BatchUnitInput = UnitInput & UnitBatch;

export interface UnitSummary {
  unit: number;
  sequences: number;
  /** Tokens generated (rollout) or scored (reference scoring). */
  tokens: number;
  /** The Temporal identity of the worker that computed it. */
  worker: string;
  /** Its runtime fingerprint (engine/fingerprint.ts fingerprintId): what the bits depend on. */
  fingerprint: string;
  /**
   * 'found': the result was stored already (a replay after a rewind, or a retry after a lost
   * completion), so nothing was computed. 'new': this attempt stored it. 'same': another attempt stored
   * these bytes meanwhile (a zombie attempt's twin). 'conflict': another attempt stored other bytes,
   * which were kept; only a worker with another runtime fingerprint computes other bytes.
   */
  stored: 'found' | 'new' | 'same' | 'conflict';
  seconds: number;
  /** Of `seconds`: loading the policy version from the store (0 when the worker held it). */
  loadSeconds: number;
}

/** Where the loop stands: exactly what a checkpoint's state.json records, so a rewind restores it. */
export interface LoopPosition {
  step: number;
  cursor: SamplerCursor;
  subsetVersion: number;
}

export interface PinResult {
  /** The policy worker's own task queue: pinned work goes there. */
  queue: string;
  identity: string;
}

export interface LoadPolicyResult {
  /** null: no valid checkpoint yet, the engine holds a freshly initialised model (version step -1). */
  checkpoint: { step: number; position: LoopPosition } | null;
  /** Newer checkpoints that were skipped because they are invalid, with the reason. */
  skippedInvalid: { step: number; reason: string }[];
  /** Differences between the machine that wrote the checkpoint and this one (CPU, ONNX Runtime, threads). */
  runtimeNotes: string[];
}

export interface WarmStartResult {
  steps: number;
  finalLoss: number | null;
  tokens: number;
  seconds: number;
}

export interface SampleBatchResult {
  exampleIds: string[];
  cursor: SamplerCursor;
}

export interface RolloutSummary {
  sequences: number;
  generatedTokens: number;
  meanCompletionTokens: number;
  truncatedShare: number;
  malformedShare: number;
  seconds: number;
}

export interface ScoreSummary {
  sequences: number;
  scoredTokens: number;
  seconds: number;
}

export interface RewardSummary {
  /** Mean and std of every reward kind this task can compute, the training reward among them. */
  rewards: Record<string, { mean: number; std: number }>;
  /** σ_j and w_j statistics of R3 over the step's groups. */
  tokenWeights: { meanStd: number; maxStd: number; topDecileWeightShare: number };
  groups: number;
  skippedGroups: number;
  seconds: number;
}

export interface UpdateSummary {
  applied: boolean;
  loss: number | null;
  gradNorm: number | null;
  kl: number | null;
  clipFraction: number | null;
  learningRate: number;
  trainedTokens: number;
  scoredTokens: number;
  seconds: number;
  /** Of `seconds`: the old and reference-policy log-probs scored before the optimizer steps. */
  scoreSeconds: number;
  /** The version this update made, published for the next step's units; absent from updates of runs started before units existed. */
  policy?: PublishedPolicy;
  /** Of `seconds`: exporting, hashing and storing that version. */
  publishSeconds?: number;
}

export interface CheckpointSummary {
  step: number;
  bytes: number;
  deleted: number[];
  seconds: number;
}

export interface FilterSummary {
  round: number;
  subsetVersion: number;
  cursor: SamplerCursor;
  candidates: number;
  kept: number;
  droppedTooHard: number;
  droppedTooEasy: number;
  carriedOver: number;
  generatedTokens: number;
  seconds: number;
}

export interface EvaluationSummary {
  step: number;
  metrics: Record<string, number>;
  examples: number;
  /** True when the stored result was returned and nothing was computed. */
  cached: boolean;
  seconds: number;
}

/** What to evaluate: a run's checkpoint at `step`, or its newest valid one (null). */
export interface EvaluationRequest {
  runId: string;
  /** The run's store URI (credentials come from the worker's environment, never from here). */
  store: string;
  step: number | null;
}

/** An evaluation, or why there was nothing to evaluate (no checkpoint yet). */
export type EvaluationOutcome = EvaluationSummary | { step: null; message: string };

export interface StepRecordInput {
  step: number;
  rollout: RolloutSummary;
  score: ScoreSummary;
  reward: RewardSummary;
  update: UpdateSummary;
}
