// Hyper-parameters a running training run accepts changes to (`dro set`): their validation, and the
// config a step runs with once the changes are applied. Pure and free of the config schema's library,
// so the workflow's update validator runs the very same checks inside the workflow sandbox.
import type { RunConfig } from './config.js';

/** The changeable fields, each with the config field it overrides. */
export const HYPERPARAMETERS = {
  learningRate: { field: 'optimizer.learningRate', describe: 'peak learning rate of the schedule', check: (v: number) => v > 0, range: 'a number > 0' },
  klBeta: { field: 'dro.klBeta', describe: 'KL penalty weight β', check: (v: number) => v >= 0, range: 'a number ≥ 0' },
  temperature: { field: 'rollout.temperature', describe: 'rollout sampling temperature', check: (v: number) => v >= 0, range: 'a number ≥ 0 (0 = greedy)' },
  evaluationEvery: {
    field: 'evaluation.every',
    describe: 'steps between evaluations of the newest checkpoint',
    check: (v: number) => Number.isSafeInteger(v) && v >= 0,
    range: 'an integer ≥ 0 (0 = off) that is a multiple of checkpoint.every',
  },
} as const;

export type HyperparameterName = keyof typeof HYPERPARAMETERS;
export type HyperparameterValues = Partial<Record<HyperparameterName, number>>;

/** A change as requested: new values, and optionally the first step they apply to (default: the next step). */
export interface HyperparameterRequest extends HyperparameterValues {
  fromStep?: number;
}

/** A change as recorded: the values and the first step they apply to. */
export interface HyperparameterChange extends HyperparameterValues {
  fromStep: number;
}

export class HyperparameterError extends Error {
  override readonly name = 'HyperparameterError';
}

const NAMES = Object.keys(HYPERPARAMETERS) as HyperparameterName[];

/**
 * Checks a requested change against the run's config and the first step it may still apply to
 * (`nextStep`); returns it with `fromStep` filled in. Throws HyperparameterError naming the field.
 */
export function validateHyperparameterRequest(request: unknown, config: RunConfig, nextStep: number): HyperparameterChange {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) throw new HyperparameterError('a hyper-parameter change is an object such as { "learningRate": 1e-5 }');
  const r = request as Record<string, unknown>;
  const unknown = Object.keys(r).filter((k) => k !== 'fromStep' && !(k in HYPERPARAMETERS));
  if (unknown.length > 0) throw new HyperparameterError(`${unknown.join(', ')}: unknown field${unknown.length > 1 ? 's' : ''} (changeable: ${NAMES.join(', ')})`);
  const change: HyperparameterChange = { fromStep: nextStep };
  for (const name of NAMES) {
    const v = r[name];
    if (v === undefined) continue;
    const spec = HYPERPARAMETERS[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || !spec.check(v)) throw new HyperparameterError(`${name} (${spec.field}) must be ${spec.range}, got ${JSON.stringify(v)}`);
    if (name === 'evaluationEvery' && v % config.checkpoint.every !== 0) {
      throw new HyperparameterError(`evaluationEvery (evaluation.every) must be a multiple of checkpoint.every (${config.checkpoint.every}) so every evaluated step has a checkpoint, got ${v}`);
    }
    change[name] = v;
  }
  if (NAMES.every((n) => change[n] === undefined)) throw new HyperparameterError(`nothing to change: give at least one of ${NAMES.join(', ')}`);
  if (r.fromStep !== undefined) {
    const from = r.fromStep;
    if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < nextStep) throw new HyperparameterError(`fromStep must be an integer ≥ ${nextStep} (the next step not yet started), got ${JSON.stringify(from)}`);
    if (from > config.schedule.totalSteps) throw new HyperparameterError(`fromStep ${from} is past the run's last step (${config.schedule.totalSteps})`);
    change.fromStep = from;
  }
  return change;
}

/** The config step `step` runs with: `config` with every change whose fromStep ≤ step applied, in the order received. */
export function configAt(config: RunConfig, changes: readonly HyperparameterChange[] | undefined, step: number): RunConfig {
  const applying = (changes ?? []).filter((c) => c.fromStep <= step);
  if (applying.length === 0) return config;
  const out: RunConfig = { ...config, optimizer: { ...config.optimizer }, dro: { ...config.dro }, rollout: { ...config.rollout }, evaluation: { ...config.evaluation } };
  for (const c of applying) {
    if (c.learningRate !== undefined) out.optimizer.learningRate = c.learningRate;
    if (c.klBeta !== undefined) out.dro.klBeta = c.klBeta;
    if (c.temperature !== undefined) out.rollout.temperature = c.temperature;
    if (c.evaluationEvery !== undefined) out.evaluation.every = c.evaluationEvery;
  }
  return out;
}

/** The values of the changeable fields in `config`. */
export function hyperparametersOf(config: RunConfig): Required<HyperparameterValues> {
  return { learningRate: config.optimizer.learningRate, klBeta: config.dro.klBeta, temperature: config.rollout.temperature, evaluationEvery: config.evaluation.every };
}
