// The run's schedule as pure functions of the step: the learning rate (linear warm-up, then constant,
// linear or cosine decay to minLrRatio · peak at the last step), and when a filtering round, a
// checkpoint and an evaluation are due. Pure, so a resumed run does exactly what an uninterrupted one
// would, and the workflow runs the very same code.
import type { RunConfig } from './config.js';
import { assertNumberIn, assertOneOf } from './stats.js';

export const LR_SCHEDULES = ['constant', 'linear', 'cosine'] as const;
export type LrScheduleKind = (typeof LR_SCHEDULES)[number];

export interface LrSchedule {
  peak: number;
  totalSteps: number;
  warmupSteps: number;
  kind: LrScheduleKind;
  minLrRatio: number;
}

/** The learning rate of training step `step` (1-based: step 1 is the first update). */
export function learningRateAt(step: number, s: LrSchedule): number {
  assertNumberIn(step, 'step', 1, Infinity, { integer: true });
  assertNumberIn(s.peak, 'schedule peak', 0, Infinity, { minExclusive: true });
  assertNumberIn(s.totalSteps, 'schedule totalSteps', 1, Infinity, { integer: true });
  assertNumberIn(s.warmupSteps, 'schedule warmupSteps', 0, s.totalSteps, { integer: true });
  assertNumberIn(s.minLrRatio, 'schedule minLrRatio', 0, 1);
  assertOneOf(s.kind, LR_SCHEDULES, 'schedule kind');
  // Warm-up reaches the peak at its last step, so step 1 of a 4-step warm-up trains at peak / 4.
  if (step <= s.warmupSteps) return (s.peak * step) / s.warmupSteps;
  if (s.kind === 'constant') return s.peak;
  const decaySteps = s.totalSteps - s.warmupSteps;
  // Progress 0 at the first step after warm-up, 1 at the last step (or beyond, clamped).
  const progress = decaySteps <= 1 ? 1 : Math.min(1, (step - s.warmupSteps - 1) / (decaySteps - 1));
  const floor = s.peak * s.minLrRatio;
  const shape = s.kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return floor + (s.peak - floor) * shape;
}

/**
 * A filtering round follows step `step` every filtering.every steps. Step 0 is the warm-started base,
 * so the first round runs before training, as in the paper; none follows the last step.
 */
export function filteringDue(config: RunConfig, step: number): boolean {
  return config.filtering.enabled && step < config.schedule.totalSteps && step % config.filtering.every === 0;
}

/** The number of the filtering round that follows step `step` (0: the round before training). */
export function filteringRound(config: RunConfig, step: number): number {
  return step / config.filtering.every;
}

/**
 * A checkpoint is committed at step 0 (the base: the KL reference every later step is measured
 * against, never deleted), every checkpoint.every steps, and at the last step (the run's result).
 */
export function checkpointDue(config: RunConfig, step: number): boolean {
  return step === 0 || step % config.checkpoint.every === 0 || step === config.schedule.totalSteps;
}

/**
 * An evaluation of step `step`'s checkpoint starts (training does not wait) every evaluation.every
 * steps (0: never); not at the base, and not at the last step when evaluation.baseAndFinal evaluates
 * it anyway (and waits). `config` is the step's own (`configAt`): evaluation.every can be changed.
 */
export function evaluationDue(config: RunConfig, step: number): boolean {
  const every = config.evaluation.every;
  return every !== 0 && step !== 0 && step % every === 0 && !(step === config.schedule.totalSteps && config.evaluation.baseAndFinal);
}
