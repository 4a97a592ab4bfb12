// Tests for the pass@k estimator: hand-computed values, edge cases and argument checks.
import { describe, expect, it } from 'vitest';
import { meanPassAtK, passAtK, passAtKTable } from './metrics.js';

/** C(n, k) by the textbook product, for checking the stable form on small n. */
function binomial(n: number, k: number): number {
  if (k < 0 || k > n) return 0;
  let result = 1;
  for (let i = 1; i <= k; i++) result = (result * (n - k + i)) / i;
  return result;
}

describe('passAtK', () => {
  it('matches hand-computed values', () => {
    expect(passAtK(5, 2, 1)).toBeCloseTo(0.4, 12);
    // 1 − C(3,2)/C(5,2) = 1 − 3/10
    expect(passAtK(5, 2, 2)).toBeCloseTo(0.7, 12);
    expect(passAtK(1, 1, 1)).toBe(1);
    expect(passAtK(1, 0, 1)).toBe(0);
  });

  it('equals c/n for k = 1', () => {
    for (const [n, c] of [[10, 3], [7, 7], [16, 0], [100, 37]] as const) expect(passAtK(n, c, 1)).toBeCloseTo(c / n, 12);
  });

  it('agrees with the binomial definition on small n', () => {
    for (let n = 1; n <= 12; n++)
      for (let c = 0; c <= n; c++)
        for (let k = 1; k <= n; k++) expect(passAtK(n, c, k)).toBeCloseTo(1 - binomial(n - c, k) / binomial(n, k), 10);
  });

  it('is 0 with no correct samples and 1 with all correct or too few wrong ones', () => {
    expect(passAtK(8, 0, 4)).toBe(0);
    expect(passAtK(8, 8, 4)).toBe(1);
    expect(passAtK(8, 5, 4)).toBe(1); // only 3 wrong samples: every draw of 4 holds a correct one
    expect(passAtK(8, 1, 8)).toBe(1);
  });

  it('stays finite and in [0, 1] for large n', () => {
    const v = passAtK(10_000, 3, 100);
    expect(v).toBeGreaterThan(0);
    expect(v).toBeLessThan(1);
    expect(v).toBeCloseTo(1 - (1 - 100 / 9998) * (1 - 100 / 9999) * (1 - 100 / 10_000), 12);
  });

  it('rejects invalid arguments', () => {
    expect(() => passAtK(0, 0, 1)).toThrow(/n must be at least 1/);
    expect(() => passAtK(5, 6, 1)).toThrow(/must not exceed n/);
    expect(() => passAtK(5, 2, 0)).toThrow(/k must be in/);
    expect(() => passAtK(5, 2, 6)).toThrow(/k must be in/);
    expect(() => passAtK(5, -1, 1)).toThrow(/c must be a non-negative integer/);
    expect(() => passAtK(5.5, 2, 1)).toThrow(/n must be a non-negative integer/);
    expect(() => passAtK(5, 2, Number.NaN)).toThrow(/k must be a non-negative integer/);
  });
});

describe('meanPassAtK', () => {
  it('averages per-example estimates', () => {
    expect(meanPassAtK([{ n: 5, c: 2 }, { n: 5, c: 0 }, { n: 5, c: 5 }], 2)).toBeCloseTo((0.7 + 0 + 1) / 3, 12);
    expect(meanPassAtK([{ n: 4, c: 1 }, { n: 2, c: 1 }], 1)).toBeCloseTo((0.25 + 0.5) / 2, 12);
  });

  it('rejects an empty list and k beyond an example n', () => {
    expect(() => meanPassAtK([], 1)).toThrow(/no examples/);
    expect(() => meanPassAtK([{ n: 4, c: 1 }, { n: 2, c: 1 }], 3)).toThrow(/k must be in/);
  });
});

describe('passAtKTable', () => {
  it('gives pass@k at every power of two below the smallest n, and at that n', () => {
    const counts = [{ n: 8, c: 2 }, { n: 8, c: 0 }];
    expect(passAtKTable(counts)).toEqual({ 'pass@1': meanPassAtK(counts, 1), 'pass@2': meanPassAtK(counts, 2), 'pass@4': meanPassAtK(counts, 4), 'pass@8': meanPassAtK(counts, 8) });
    expect(Object.keys(passAtKTable([{ n: 6, c: 1 }, { n: 9, c: 3 }]))).toEqual(['pass@1', 'pass@2', 'pass@4', 'pass@6']);
    expect(passAtKTable([{ n: 1, c: 1 }, { n: 3, c: 0 }])).toEqual({ 'pass@1': 0.5 });
    expect(() => passAtKTable([])).toThrow(/no examples/);
  });
});
