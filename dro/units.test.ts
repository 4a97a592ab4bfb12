// Units cut the plan into consecutive, fixed-size pieces, whatever the number of workers.
import { describe, expect, it } from 'vitest';
import { scoredSequences, unitCount, unitRange } from './units.js';

describe('units', () => {
  it('cover every sequence once, in order, the last unit taking the rest', () => {
    expect(unitCount(64, 64)).toBe(1);
    expect(unitCount(65, 64)).toBe(2);
    expect(unitCount(0, 8)).toBe(0);
    const covered: number[] = [];
    for (let u = 0; u < unitCount(21, 8); u++) {
      const { start, end } = unitRange(u, 8, 21);
      for (let i = start; i < end; i++) covered.push(i);
    }
    expect(covered).toEqual(Array.from({ length: 21 }, (_, i) => i));
    expect(unitRange(2, 8, 21)).toEqual({ start: 16, end: 21 });
  });

  it('refuse a unit that does not exist or a size below one', () => {
    expect(() => unitRange(3, 8, 21)).toThrow(/unit 3 does not exist: 21 sequences make 3 units of 8/);
    expect(() => unitRange(-1, 8, 21)).toThrow(RangeError);
    expect(() => unitCount(5, 0)).toThrow(/at least one sequence, not 0/);
  });

  it('count the masked chain once per group', () => {
    expect(scoredSequences(3, 4, false)).toBe(12);
    expect(scoredSequences(3, 4, true)).toBe(15);
  });
});
