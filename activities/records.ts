// The run's store records in one place: the key layout of everything a run writes besides its checkpoint
// files, each record's shape, and its typed writer and reader. Keys are deterministic, so a retried or
// replayed activity writes the same key with the same content. Readers check a record's structure and
// name the key of one that does not fit; fields another module owns (the config, a sampler cursor, a
// hyper-parameter change, a filtering decision) are checked only as objects, their owners check the rest.
import { z } from 'zod';
import type { RunConfig } from '../dro/config.js';
import type { FilterDecision } from '../dro/data-filter.js';
import type { HyperparameterChange } from '../dro/hyperparameters.js';
import type { ConfigChange } from '../dro/resumable.js';
import type { SamplerCursor } from '../datasets/sampler.js';
import { BlobNotFoundError, type BlobStore, type OpOptions } from '../storage/blob-store.js';
import { STATE_FILE, readCheckpointState as readStateFile, type LoadedCheckpoint } from '../storage/checkpoints.js';

const pad = (n: number): string => String(n).padStart(8, '0');

export const runKeys = {
  stepDir: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/`,
  rollout: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rollout.json`,
  scores: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/scores.json`,
  rewards: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rewards.json`,
  update: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/update.json`,
  subset: (runId: string, version: number): string => `${runId}/subsets/${pad(version)}.json`,
  filterRound: (runId: string, round: number): string => `${runId}/filtering/${pad(round)}.json`,
  filteringPrefix: (runId: string): string => `${runId}/filtering/`,
  metrics: (runId: string, step: number): string => `${runId}/metrics/${pad(step)}.json`,
  metricsPrefix: (runId: string): string => `${runId}/metrics/`,
  evaluation: (runId: string, step: number): string => `${runId}/evaluations/${pad(step)}.json`,
  evaluationsPrefix: (runId: string): string => `${runId}/evaluations/`,
  /** A unit's result (dro/units.ts), keyed by a digest of everything it was computed from, so a unit of other inputs never meets it. */
  unit: (runId: string, step: number, kind: string, unit: number, inputs: string): string => `${runId}/steps/${pad(step)}/units/${kind}-${String(unit).padStart(5, '0')}-${inputs}.json`,
  /** A unit of the evaluation of checkpoint `step`, keyed by the checkpoint weights' sha256 (its first 16 hex digits). */
  evaluationUnit: (runId: string, step: number, unit: number, weights: string): string => `${runId}/evaluation-units/${pad(step)}/unit-${String(unit).padStart(5, '0')}-${weights}.json`,
  /** A filtering round's chains, combined from its units (the round runs after `step`). */
  filterRollout: (runId: string, step: number, round: number): string => `${runId}/steps/${pad(step)}/filter-${pad(round)}-rollout.json`,
  /** A published policy version: the trained weights after `step` steps, by content. */
  policy: (runId: string, step: number, sha256: string): string => `${runId}/policies/${pad(step)}/${sha256}.safetensors`,
  policiesPrefix: (runId: string): string => `${runId}/policies/`,
  /** Every hyper-parameter change the run accepted, so a resume from an older checkpoint replays them. */
  hyperparameters: (runId: string): string => `${runId}/hyperparameters.json`,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Any JSON under `key`, compact with a final newline (every record of the store is written so). */
export async function writeJson(store: BlobStore, key: string, value: unknown, signal?: AbortSignal): Promise<void> {
  await store.put(key, encoder.encode(`${JSON.stringify(value)}\n`), { signal });
}

/** JSON read back unchecked: for a step's own artifacts, which only the step's activities write and read. */
export async function readJson<T>(store: BlobStore, key: string, signal?: AbortSignal): Promise<T> {
  const bytes = await store.get(key, { signal });
  return JSON.parse(decoder.decode(bytes)) as T;
}

async function readJsonIfExists<T>(store: BlobStore, key: string, signal?: AbortSignal): Promise<T | undefined> {
  try {
    return await readJson<T>(store, key, signal);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  }
}

/** A stored record that is not valid JSON or not the shape its key promises. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
}

const count = z.number().int().nonnegative();
const meanStd = z.object({ mean: z.number(), std: z.number() });
/** A value whose own module checks it: a record checks only that it is an object. */
const ownedObject = <T>() => z.custom<T>((v) => v !== null && typeof v === 'object' && !Array.isArray(v), 'expected an object');

/** metrics/<step>.json: every number of a training step, in the order the training step writes them. */
const stepMetricsSchema = z.object({
  step: count,
  /** Mean and std of the training reward (the kind dro.reward names). */
  reward: meanStd,
  /** Mean and std of every reward kind the task can compute. */
  rewards: z.record(z.string(), meanStd),
  /** σ_j and w_j statistics of R3 over the step's groups. */
  r3TokenWeights: z.object({ meanStd: z.number(), maxStd: z.number(), topDecileWeightShare: z.number() }),
  loss: z.number().nullable(),
  gradNorm: z.number().nullable(),
  kl: z.number().nullable(),
  clipFraction: z.number().nullable(),
  learningRate: z.number(),
  /** The step's KL weight and sampling temperature after hyper-parameter changes; absent in records written before 2026-12-02. */
  klBeta: z.number().optional(),
  temperature: z.number().optional(),
  completionTokens: z.number(),
  truncatedShare: z.number(),
  malformedShare: z.number(),
  skippedGroupShare: z.number(),
  tokens: z.object({ generated: count, scored: count, trained: count }),
  /** Seconds per phase of the step, by the training step's phase names: the only values a replay may change. */
  timing: z.record(z.string(), z.number()),
});
export type StepMetricsRecord = z.infer<typeof stepMetricsSchema>;

/** evaluations/<step>.json: the summary an evaluation returns, and every completion it scored. */
const evaluationSchema = z.object({
  step: count,
  metrics: z.record(z.string(), z.number()),
  examples: count,
  cached: z.boolean(),
  seconds: z.number(),
  predictions: z.array(z.object({ exampleId: z.string(), completions: z.array(z.string()) })),
});
export type EvaluationRecord = z.infer<typeof evaluationSchema>;

/** filtering/<round>.json: a filtering round's decision on every candidate, and its compute. */
const filterRoundSchema = z.object({
  round: count,
  /** The training step the round ran after. */
  step: count,
  /** Tokens the round generated and scored; absent in records written before 2026-12-06. */
  tokens: z.object({ generated: count, scored: count }).optional(),
  decisions: z.array(ownedObject<FilterDecision>()),
  /** The round kept nothing, so the previous subset stays. */
  emptyRoundKeptPrevious: z.boolean(),
});
export type FilterRoundRecord = z.infer<typeof filterRoundSchema>;

/** subsets/<version>.json: the ids a filtering round left to train on, sorted. */
const subsetSchema = z.object({ version: count, round: count, subset: z.array(z.string()) });
export type SubsetRecord = z.infer<typeof subsetSchema>;

/**
 * hyperparameters.json: the run's change log, every hyper-parameter change it accepted, in order, and the
 * config changes its resumes made (absent in logs of runs that never resumed with one).
 */
const changeLogSchema = z.object({ runId: z.string(), changes: z.array(ownedObject<HyperparameterChange>()), configChanges: z.array(ownedObject<ConfigChange>()).optional() });
export type ChangeLogRecord = z.infer<typeof changeLogSchema>;

export const CHECKPOINT_STATE_VERSION = 1;

/** state.json of a training checkpoint: the loop position and everything a resume checks. */
const checkpointStateSchema = z.object({
  formatVersion: count,
  runId: z.string(),
  step: count,
  /** Where the loop stands (LoopPosition), so a rewind restores it. */
  position: z.object({ step: count, cursor: ownedObject<SamplerCursor>(), subsetVersion: count }),
  /** The filtered subset the cursor draws from (its ids, sorted). */
  subset: z.array(z.string()),
  config: ownedObject<RunConfig>(),
  configHash: z.string(),
  /** The hyper-parameter changes in effect at this step (fromStep ≤ step); later ones are in the run's change log. */
  hyperparameters: z.array(ownedObject<HyperparameterChange>()),
  /** The config changes of resumes in effect at this step (fromStep ≤ step), in order; absent when there are none. */
  configChanges: z.array(ownedObject<ConfigChange>()).optional(),
  /** The runtime fingerprint of the worker that wrote it (engine/fingerprint.ts); arch and cpuFeatures are absent in checkpoints written before 2026-12-07. */
  runtime: z.object({
    onnxruntimeVersion: z.string(),
    cpuModel: z.string(),
    arch: z.string().optional(),
    cpuFeatures: z.array(z.string()).nullable().optional(),
    intraOpThreads: count,
    executionProvider: z.string(),
  }),
  /** LoRA runs: the base the adapters belong to (sha256 of its weights as loaded, see PolicyEngine.baseDigest). */
  loraBase: z.object({ sha256: z.string(), path: z.string().nullable() }).optional(),
});
export type CheckpointState = z.infer<typeof checkpointStateSchema>;

/**
 * `value` as a record of `schema`, or a RecordError naming `where` and the first field that does not fit.
 * The value itself comes back, not zod's copy, so a record keeps its own field order and any field a
 * newer writer added.
 */
function checked<S extends z.ZodType>(schema: S, value: unknown, what: string, where: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return value as z.infer<S>;
  const issue = result.error.issues[0]!;
  throw new RecordError(`${where} is not ${what}: ${issue.path.length > 0 ? issue.path.join('.') : 'the record'}: ${issue.message}`);
}

async function readRecord<S extends z.ZodType>(store: BlobStore, key: string, schema: S, what: string, signal?: AbortSignal): Promise<z.infer<S> | undefined> {
  let value: unknown;
  try {
    value = await readJsonIfExists<unknown>(store, key, signal);
  } catch (err) {
    if (err instanceof SyntaxError) throw new RecordError(`${key} in ${store.location} is not valid JSON (${err.message})`, { cause: err });
    throw err;
  }
  return value === undefined ? undefined : checked(schema, value, what, `${key} in ${store.location}`);
}

/** Every record under `prefix`, in key order (the zero-padded step or round, so numeric order). */
async function readRecords<S extends z.ZodType>(store: BlobStore, prefix: string, schema: S, what: string, signal?: AbortSignal): Promise<z.infer<S>[]> {
  const keys = (await store.list(prefix, { signal })).map((b) => b.key).filter((k) => k.endsWith('.json')).sort();
  const out: z.infer<S>[] = [];
  for (const key of keys) {
    const record = await readRecord(store, key, schema, what, signal);
    if (record !== undefined) out.push(record);
  }
  return out;
}

/** The training step writes klBeta and temperature; only records from before they existed lack them. */
export async function writeStepMetrics(store: BlobStore, runId: string, record: Required<StepMetricsRecord>, signal?: AbortSignal): Promise<void> {
  await writeJson(store, runKeys.metrics(runId, record.step), record, signal);
}

export function readStepMetrics(store: BlobStore, runId: string, signal?: AbortSignal): Promise<StepMetricsRecord[]> {
  return readRecords(store, runKeys.metricsPrefix(runId), stepMetricsSchema, "a step's metrics record", signal);
}

export async function writeEvaluation(store: BlobStore, runId: string, record: EvaluationRecord, signal?: AbortSignal): Promise<void> {
  await writeJson(store, runKeys.evaluation(runId, record.step), record, signal);
}

/** The evaluation of checkpoint `step`, or undefined when that step has not been evaluated. */
export function readEvaluation(store: BlobStore, runId: string, step: number, signal?: AbortSignal): Promise<EvaluationRecord | undefined> {
  return readRecord(store, runKeys.evaluation(runId, step), evaluationSchema, 'an evaluation record', signal);
}

export function readEvaluations(store: BlobStore, runId: string, signal?: AbortSignal): Promise<EvaluationRecord[]> {
  return readRecords(store, runKeys.evaluationsPrefix(runId), evaluationSchema, 'an evaluation record', signal);
}

export async function writeFilterRound(store: BlobStore, runId: string, record: FilterRoundRecord, signal?: AbortSignal): Promise<void> {
  await writeJson(store, runKeys.filterRound(runId, record.round), record, signal);
}

export function readFilterRounds(store: BlobStore, runId: string, signal?: AbortSignal): Promise<FilterRoundRecord[]> {
  return readRecords(store, runKeys.filteringPrefix(runId), filterRoundSchema, 'a filtering round record', signal);
}

export async function writeSubset(store: BlobStore, runId: string, record: SubsetRecord, signal?: AbortSignal): Promise<void> {
  await writeJson(store, runKeys.subset(runId, record.version), record, signal);
}

/** Subset `version` as a filtering round wrote it (version 0, the whole pool, is never written). */
export async function readSubsetRecord(store: BlobStore, runId: string, version: number, signal?: AbortSignal): Promise<SubsetRecord> {
  const record = await readRecord(store, runKeys.subset(runId, version), subsetSchema, 'a subset record', signal);
  if (record === undefined) throw new BlobNotFoundError(store.location, runKeys.subset(runId, version));
  return record;
}

export async function writeChangeLog(store: BlobStore, record: ChangeLogRecord, signal?: AbortSignal): Promise<void> {
  await writeJson(store, runKeys.hyperparameters(record.runId), record, signal);
}

/** The run's change log, or undefined when the run never accepted a change. */
export function readChangeLog(store: BlobStore, runId: string, signal?: AbortSignal): Promise<ChangeLogRecord | undefined> {
  return readRecord(store, runKeys.hyperparameters(runId), changeLogSchema, 'a change log record', signal);
}

/** The state of a checkpoint loaded with storage/checkpoints.ts. */
export function checkpointState(checkpoint: LoadedCheckpoint): CheckpointState {
  return checked(checkpointStateSchema, checkpoint.state, 'a checkpoint state', `${checkpoint.ref.prefix}${STATE_FILE}`);
}

/** A checkpoint's state alone (cheap: the model files are not read), checked against its size in the manifest. */
export async function readCheckpointState(store: BlobStore, runId: string, step: number, opts: OpOptions = {}): Promise<CheckpointState> {
  const state = await readStateFile(store, runId, step, opts);
  return checked(checkpointStateSchema, state, 'a checkpoint state', `${STATE_FILE} of checkpoint ${step} of run ${runId} in ${store.location}`);
}
