// Attempts per step: counts accumulate per step, the limit (or its default) ends the run, and a step
// that gets through is forgotten without touching the others.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_ATTEMPTS_PER_STEP, failedAttempt, stepThrough } from './attempts.js';

describe('failedAttempt', () => {
  it.each([
    // failures before, step, limit → attempts, exhausted
    [undefined, 3, 3, 1, false],
    [{ 3: 1 }, 3, 3, 2, false],
    [{ 3: 2 }, 3, 3, 3, true],
    [{ 3: 2 }, 4, 3, 1, false],
    [{}, 0, 1, 1, true],
    [{ 7: 4 }, 7, 10, 5, false],
  ] as const)('before %j, a failure at step %i with limit %i is attempt %i (exhausted: %s)', (before, step, limit, attempts, exhausted) => {
    const out = failedAttempt(before, step, limit);
    expect(out).toEqual({ failures: { ...before, [step]: attempts }, attempts, exhausted });
  });

  it('uses the default limit for a config from before the field', () => {
    expect(DEFAULT_MAX_ATTEMPTS_PER_STEP).toBe(3);
    expect(failedAttempt({ 5: 1 }, 5, undefined).exhausted).toBe(false);
    expect(failedAttempt({ 5: 2 }, 5, undefined).exhausted).toBe(true);
  });

  it('leaves the counts it was given unchanged (workflow state is replaced, not edited)', () => {
    const before = { 2: 1 };
    failedAttempt(before, 2, 3);
    expect(before).toEqual({ 2: 1 });
  });
});

describe('stepThrough', () => {
  it('forgets the step that got through and keeps the others', () => {
    expect(stepThrough({ 2: 1, 5: 2 }, 2)).toEqual({ 5: 2 });
    expect(stepThrough({ 5: 2 }, 3)).toEqual({ 5: 2 });
    expect(stepThrough(undefined, 0)).toEqual({});
  });
});
