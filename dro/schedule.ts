// The learning-rate schedule as a pure function of the step: linear warm-up, then constant, linear or
// cosine decay to minLrRatio · peak at the last step. A pure function, so a resumed run uses exactly
// the rate an uninterrupted one would.
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
