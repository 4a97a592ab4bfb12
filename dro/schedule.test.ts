// Learning-rate schedule: hand-computed values for warm-up and each decay shape, and bad input.
import { describe, expect, it } from 'vitest';
import { learningRateAt, type LrSchedule } from './schedule.js';

const base: LrSchedule = { peak: 1, totalSteps: 10, warmupSteps: 0, kind: 'constant', minLrRatio: 0 };

describe('learningRateAt', () => {
  it('is the peak at every step when constant without warm-up', () => {
    expect([1, 5, 10].map((s) => learningRateAt(s, base))).toEqual([1, 1, 1]);
  });

  it('warms up linearly to the peak at the last warm-up step', () => {
    const s = { ...base, warmupSteps: 4 };
    expect([1, 2, 3, 4, 5].map((t) => learningRateAt(t, s))).toEqual([0.25, 0.5, 0.75, 1, 1]);
  });

  it('decays linearly from the peak to the floor at the last step', () => {
    const s: LrSchedule = { ...base, kind: 'linear', totalSteps: 5, minLrRatio: 0.2 };
    const rates = [1, 2, 3, 4, 5].map((t) => learningRateAt(t, s));
    [1, 0.8, 0.6, 0.4, 0.2].forEach((x, i) => expect(rates[i]).toBeCloseTo(x, 12));
  });

  it('follows half a cosine after warm-up, and clamps past the end', () => {
    const s: LrSchedule = { ...base, kind: 'cosine', totalSteps: 5, warmupSteps: 2 };
    expect(learningRateAt(3, s)).toBe(1);
    expect(learningRateAt(4, s)).toBeCloseTo(0.5, 12);
    expect(learningRateAt(5, s)).toBeCloseTo(0, 12);
    expect(learningRateAt(9, s)).toBeCloseTo(0, 12);
  });

  it('uses the floor when only one step is left to decay', () => {
    expect(learningRateAt(3, { ...base, kind: 'linear', totalSteps: 3, warmupSteps: 2, minLrRatio: 0.5 })).toBe(0.5);
  });

  it('rejects bad steps and schedules, naming them', () => {
    expect(() => learningRateAt(0, base)).toThrow(/step/);
    expect(() => learningRateAt(1, { ...base, peak: 0 })).toThrow(/peak/);
    expect(() => learningRateAt(1, { ...base, warmupSteps: 11 })).toThrow(/warmupSteps/);
    expect(() => learningRateAt(1, { ...base, kind: 'step' as never })).toThrow(/kind/);
  });
});
