// What `dro resume --config` may change in a run's config: operational fields that do not change what a
// checkpoint means, so a run that failed (a crash loop at one step, say) continues from its latest valid
// checkpoint under new values. The other fields (model, data, seed, the algorithm's shape, the schedule)
// define the checkpoint's weights, optimizer state and data cursor, or the steps still to come; a change
// to one is refused, naming it. Pure, and the one place that says which fields are which.
import { canonicalJson, configDifferences, type RunConfig } from './config.js';
import { configAt, HYPERPARAMETERS, validateHyperparameterRequest, type HyperparameterChange, type HyperparameterName, type HyperparameterValues } from './hyperparameters.js';

/**
 * The fields a resume may change, one a line: a dotted path, or `<section>.*` for every field of a section.
 * A step computed under a changed field may differ in its last bits from the same step before the change
 * (the batch plan and the thread count set the order of summation), never in what it means.
 */
export const RESUMABLE_FIELDS: readonly string[] = [
  // The batch plan's chunk size (sequences per engine call): the engine's memory, not the step's content.
  'rollout.batchSequences',
  // The micro-batch budget: an update's and a scoring call's memory, not what they compute (the gradient is the batch's either way).
  'update.microBatchTokens',
  // How Temporal drives the run: executions, timeouts, attempts at one step.
  'orchestration.*',
  // Retention: which older checkpoints are kept (never the newest valid one, never step 0).
  'checkpoint.keepLast',
  'checkpoint.keepEvery',
  // How the engine runs (the run's notes name a thread count other than the checkpoint's).
  'model.intraOpThreads',
  'model.executionProvider',
  // What `dro set` changes on a live run (learning rate, KL β, temperature, evaluation cadence), as a change from the resumed step.
  ...Object.values(HYPERPARAMETERS).map((h) => h.field),
];

/** True when a resume may change the field at dotted `path`. */
export function isResumable(path: string): boolean {
  return RESUMABLE_FIELDS.some((f) => f === path || (f.endsWith('.*') && path.startsWith(f.slice(0, -1))));
}

/** The fields that differ between a checkpoint's config and another that a resume cannot change, as dotted paths. */
export function unresumableDifferences(checkpointConfig: unknown, config: unknown): string[] {
  return configDifferences(checkpointConfig, config).filter((path) => !isResumable(path));
}

/** A resume's change of the run's config, as the run's change log and every later checkpoint's state.json record it. */
export interface ConfigChange {
  /** The first step computed under the change (the step after the checkpoint resumed from). */
  fromStep: number;
  /** Each changed field by dotted path, with its value in the checkpoint's config and its new value. */
  fields: Record<string, { before: unknown; after: unknown }>;
}

/** A resume asked to change fields it cannot; `fields` names each. */
export class ResumeConfigError extends Error {
  override readonly name = 'ResumeConfigError';
  constructor(readonly fields: string[]) {
    super(`a resume cannot change ${fields.join(', ')} (a checkpoint means something only under ${fields.length > 1 ? 'their' : 'its'} value); it may change ${RESUMABLE_FIELDS.join(', ')}`);
  }
}

export interface ResumePlan {
  /** The config the resumed run starts with: the checkpoint's, with the changed fields that are not hyper-parameters. */
  config: RunConfig;
  /** The changed hyper-parameters, from the resumed step on (they stay out of `config`, so steps before it keep theirs); null when none. */
  hyperparameters: HyperparameterChange | null;
  /** What changed, for the run's records; null when nothing did. */
  change: ConfigChange | null;
}

const HYPERPARAMETER_BY_FIELD = new Map(Object.entries(HYPERPARAMETERS).map(([name, h]) => [h.field as string, name as HyperparameterName]));

const valueAt = (config: unknown, path: string): unknown => path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], config);

/** `config` with the field at `path` set to `value` (the sections on the way copied, the rest shared). */
function withValueAt<T>(config: T, path: string, value: unknown): T {
  const [key, ...rest] = path.split('.') as [string, ...string[]];
  const node = config as Record<string, unknown>;
  return { ...node, [key]: rest.length === 0 ? value : withValueAt(node[key], rest.join('.'), value) } as T;
}

/**
 * How a run resumed from checkpoint `fromStep - 1` with `given` (a validated config) instead of the
 * checkpoint's config continues: the config it runs with, the hyper-parameter change from `fromStep`, and
 * the record of what changed. `accepted` are the hyper-parameter changes the run accepted before: a
 * hyper-parameter that `given` leaves at the checkpoint config's value (a file from before a `dro set`) or
 * at the value in force keeps the value in force. Throws ResumeConfigError naming every field a resume
 * cannot change.
 */
export function planResume(checkpointConfig: RunConfig, given: RunConfig, fromStep: number, accepted: readonly HyperparameterChange[] = []): ResumePlan {
  const refused = unresumableDifferences(checkpointConfig, given);
  if (refused.length > 0) throw new ResumeConfigError(refused);
  const inForce = configAt(checkpointConfig, accepted, fromStep);
  const changed = configDifferences(checkpointConfig, given).filter((path) => canonicalJson(valueAt(inForce, path)) !== canonicalJson(valueAt(given, path)));
  if (changed.length === 0) return { config: checkpointConfig, hyperparameters: null, change: null };
  let config = checkpointConfig;
  const values: HyperparameterValues = {};
  const fields: ConfigChange['fields'] = {};
  for (const path of changed) {
    const after = valueAt(given, path);
    fields[path] = { before: valueAt(inForce, path), after };
    const name = HYPERPARAMETER_BY_FIELD.get(path);
    if (name) values[name] = after as number;
    else config = withValueAt(config, path, after);
  }
  const hyperparameters = Object.keys(values).length > 0 ? validateHyperparameterRequest(values, config, fromStep) : null;
  return { config, hyperparameters, change: { fromStep, fields } };
}

/** One line on a config change, e.g. "rollout.batchSequences 8 → 4, optimizer.learningRate 0.0001 → 0.0002". */
export function describeConfigChange(change: ConfigChange): string {
  return Object.entries(change.fields)
    .map(([path, { before, after }]) => `${path} ${JSON.stringify(before)} → ${JSON.stringify(after)}`)
    .join(', ');
}
