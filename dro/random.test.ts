// Counter-based randomness and the shared statistics helpers.
import { describe, expect, it } from 'vitest';
import { chooseDeterministic, uniform, uniformStream } from './random.js';
import { allEqual, assertFiniteMatrix, assertFiniteVector, mean, populationStd, quantile } from './stats.js';

describe('uniform', () => {
  it('is a pure function of its key, in [0, 1), and keys of different types differ', () => {
    expect(uniform([7, 'step', 3])).toBe(uniform([7, 'step', 3]));
    expect(uniform([7, 'step', 3])).not.toBe(uniform([7, 'step', 4]));
    expect(uniform(['1', 2])).not.toBe(uniform([1, '2']));
    expect(uniform(['a,b'])).not.toBe(uniform(['a', 'b']));
  });

  it('is close to uniform: mean ≈ 1/2, each decile ≈ 10%', () => {
    const n = 20_000;
    const bins = new Array<number>(10).fill(0);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const u = uniform(['uniformity', i]);
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      bins[Math.floor(u * 10)]!++;
    }
    expect(sum / n).toBeCloseTo(0.5, 2);
    for (const count of bins) expect(Math.abs(count / n - 0.1)).toBeLessThan(0.01);
  });

  it('rejects non-finite and non-primitive key parts', () => {
    expect(() => uniform([Number.NaN])).toThrow('random key part must be finite');
    expect(() => uniform([{} as never])).toThrow('random key parts must be strings or numbers');
  });
});

describe('uniformStream', () => {
  it('is a pure function of (key, index, lane), separates keys and lanes, and is close to uniform', () => {
    const a = uniformStream(['init', 3, 'w']);
    const again = uniformStream(['init', 3, 'w']);
    expect(a(17, 1)).toBe(again(17, 1));
    expect(a(17, 1)).not.toBe(a(17, 2));
    expect(a(17, 1)).not.toBe(a(18, 1));
    expect(a(5)).toBe(a(5, 0));
    expect(uniformStream(['init', 4, 'w'])(17, 1)).not.toBe(a(17, 1));
    let sum = 0;
    let low = 0;
    const n = 50_000;
    for (let i = 0; i < n; i++) {
      const u = a(i, 1);
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      if (u < 0.1) low++;
    }
    expect(sum / n).toBeCloseTo(0.5, 2);
    expect(Math.abs(low / n - 0.1)).toBeLessThan(0.005);
  });
});

describe('chooseDeterministic', () => {
  const ids = Array.from({ length: 50 }, (_, i) => `ex-${i}`);
  it('chooses the same items whatever their input order, and different keys choose differently', () => {
    const a = chooseDeterministic(ids, 5, ['seed', 1]);
    expect(chooseDeterministic([...ids].reverse(), 5, ['seed', 1])).toEqual(a);
    expect(new Set(a).size).toBe(5);
    expect(chooseDeterministic(ids, 5, ['seed', 2])).not.toEqual(a);
    expect(chooseDeterministic(ids, 0, ['seed'])).toEqual([]);
    expect(chooseDeterministic(['x', 'x', 'y'], 5, ['seed']).sort()).toEqual(['x', 'y']);
    expect(() => chooseDeterministic(ids, -1, ['seed'])).toThrow('count must be a non-negative integer, got -1');
  });
});

describe('stats', () => {
  it('mean, population std, equality and type-7 quantiles', () => {
    expect(mean([1, 2, 6])).toBe(3);
    expect(populationStd([2, 4, 4, 4, 5, 5, 7, 9])).toBe(2);
    expect(populationStd([3])).toBe(0);
    expect(allEqual([1, 1, 1])).toBe(true);
    expect(allEqual([1, 1, 2])).toBe(false);
    // sorted (1, 2, 3, 4): q = 0.9 → position 2.7 → 3 + 0.7·(4 − 3) = 3.7
    expect(quantile([4, 1, 3, 2], 0.9)).toBeCloseTo(3.7, 14);
    expect(quantile([4, 1, 3, 2], 0)).toBe(1);
    expect(quantile([4, 1, 3, 2], 1)).toBe(4);
    expect(quantile([5], 0.3)).toBe(5);
    expect(() => quantile([], 0.5)).toThrow('quantile of an empty list');
    expect(() => quantile([1], 1.5)).toThrow('quantile level must be in [0, 1], got 1.5');
  });

  it('input checks name the argument', () => {
    expect(() => assertFiniteVector('1,2' as never, 'weights')).toThrow('weights must be an array of numbers');
    expect(() => assertFiniteVector([1, '2' as never], 'weights')).toThrow('weights[1] is not a finite number (2)');
    expect(() => assertFiniteMatrix([[1], 2 as never], 'm')).toThrow('m[1] is not an array');
    expect(assertFiniteMatrix([[1, 2], [3, 4], [5, 6]], 'm')).toEqual([3, 2]);
  });
});
