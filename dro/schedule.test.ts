// The run's schedule: hand-computed learning rates for warm-up and each decay shape, and bad input;
// table tests of when filtering rounds, checkpoints and evaluations are due.
import { describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfig } from './config.js';
import { checkpointDue, evaluationDue, filteringDue, filteringRound, learningRateAt, type LrSchedule } from './schedule.js';

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

describe('the cadence of filtering rounds, checkpoints and evaluations', () => {
  // Hand-written tables: one run of 10 steps, with every cadence field varied where it matters.
  const run = (o: { filtering?: Partial<RunConfig['filtering']>; checkpoint?: Partial<RunConfig['checkpoint']>; evaluation?: Partial<RunConfig['evaluation']> } = {}): RunConfig =>
    parseRunConfig({ schedule: { totalSteps: 10 }, filtering: { enabled: true, every: 4, ...o.filtering }, checkpoint: { every: 4, ...o.checkpoint }, evaluation: { every: 4, baseAndFinal: true, ...o.evaluation } });
  const dueSteps = (due: (step: number) => boolean): number[] => Array.from({ length: 11 }, (_, s) => s).filter(due);

  it.each([
    { what: 'every 4: before training (after step 0), after 4 and 8', config: run(), steps: [0, 4, 8] },
    { what: 'every 5: never after the last step', config: run({ filtering: { every: 5 } }), steps: [0, 5] },
    { what: 'every 1', config: run({ filtering: { every: 1 } }), steps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] },
    { what: 'disabled', config: run({ filtering: { enabled: false } }), steps: [] },
  ])('filtering rounds follow the steps named: $what', ({ config, steps }) => {
    expect(dueSteps((s) => filteringDue(config, s))).toEqual(steps);
  });

  it('numbers the rounds from 0, the round before training', () => {
    const config = run();
    expect([0, 4, 8].map((s) => filteringRound(config, s))).toEqual([0, 1, 2]);
  });

  it.each([
    { what: 'every 4: the base, 4, 8 and the last step', config: run(), steps: [0, 4, 8, 10] },
    { what: 'every 5: the last step is one of them', config: run({ checkpoint: { every: 5 }, evaluation: { every: 0 } }), steps: [0, 5, 10] },
    { what: 'every 20: only the base and the last step', config: run({ checkpoint: { every: 20 }, evaluation: { every: 0 } }), steps: [0, 10] },
  ])('checkpoints at the steps named: $what', ({ config, steps }) => {
    expect(dueSteps((s) => checkpointDue(config, s))).toEqual(steps);
  });

  it.each([
    { what: 'every 4: never the base', config: run(), steps: [4, 8] },
    { what: 'every 5 with baseAndFinal: the last step is left to the final evaluation', config: run({ checkpoint: { every: 5 }, evaluation: { every: 5 } }), steps: [5] },
    { what: 'every 5 without baseAndFinal: the last step too', config: run({ checkpoint: { every: 5 }, evaluation: { every: 5, baseAndFinal: false } }), steps: [5, 10] },
    { what: 'every 0: off', config: run({ evaluation: { every: 0 } }), steps: [] },
  ])('evaluations start at the steps named: $what', ({ config, steps }) => {
    expect(dueSteps((s) => evaluationDue(config, s))).toEqual(steps);
  });
});
