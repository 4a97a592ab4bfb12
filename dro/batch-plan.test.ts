// Packing into micro-batches by tokens (padding counted) and sequences, by hand-worked tables.
import { describe, expect, it } from 'vitest';
import { packByTokens, PackingError, paddedTokens } from './batch-plan.js';

describe('packByTokens', () => {
  const table: [string, number[], number, number, number[][]][] = [
    ['everything fits one micro-batch', [3, 5, 4], 15, Infinity, [[0, 1, 2]]],
    // Longest first: 5 then 4 (2 × 5 = 10 fits); adding the 3 makes 3 × 5 = 15 > 12.
    ['padding counts: the longest sets the cost', [3, 5, 4], 12, Infinity, [[1, 2], [0]]],
    // The 6 takes one short sequence (2 × 6 = 12), not two (3 × 6 = 18 > 12 although the real tokens are 8).
    ['a long sequence raises the padded cost of the ones beside it', [1, 1, 6, 1], 12, Infinity, [[0, 2], [1, 3]]],
    // In plan order [0, 1] and [2, 3] would cost 2 × 8 twice; sorted, the long pair costs 16 and the short pair 4.
    ['sequences of like length share a micro-batch', [2, 8, 2, 8], 16, Infinity, [[1, 3], [0, 2]]],
    ['exactly at the budget joins', [4, 4, 4], 12, Infinity, [[0, 1, 2]]],
    ['the sequence cap splits too', [1, 1, 1, 1, 1], 100, 2, [[0, 1], [2, 3], [4]]],
    ['one per micro-batch when each fills it', [7, 7], 7, Infinity, [[0], [1]]],
    ['no sequences, no micro-batches', [], 8, Infinity, []],
  ];
  for (const [name, lengths, maxTokens, maxSequences, expected] of table) {
    it(name, () => {
      const plan = packByTokens(lengths, { maxTokens, maxSequences });
      expect(plan).toEqual(expected);
      for (const tokens of paddedTokens(lengths, plan)) expect(tokens).toBeLessThanOrEqual(maxTokens);
    });
  }

  it('is a pure function of the lengths and limits: the same input packs the same way', () => {
    const lengths = Array.from({ length: 50 }, (_, i) => 1 + ((i * 37) % 23));
    expect(packByTokens(lengths, { maxTokens: 64, maxSequences: 8 })).toEqual(packByTokens([...lengths], { maxTokens: 64, maxSequences: 8 }));
    const plan = packByTokens(lengths, { maxTokens: 64, maxSequences: 8 });
    expect(plan.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const group of plan) expect(group).toEqual([...group].sort((a, b) => a - b));
  });

  it('refuses a sequence longer than the budget, naming it', () => {
    const attempt = () => packByTokens([3, 9, 2], { maxTokens: 8, maxSequences: Infinity });
    expect(attempt).toThrow(new PackingError('sequence 1 has 9 tokens, more than a micro-batch\'s 8', 1, 9));
    try {
      attempt();
    } catch (err) {
      expect(err).toMatchObject({ index: 1, length: 9 });
    }
  });

  it("with oversize 'alone', gives a longer sequence a micro-batch of its own", () => {
    expect(packByTokens([3, 9, 2, 2], { maxTokens: 8, maxSequences: Infinity, oversize: 'alone' })).toEqual([[1], [0, 2], [3]]);
    expect(packByTokens([9, 12], { maxTokens: 8, maxSequences: Infinity, oversize: 'alone' })).toEqual([[1], [0]]);
  });

  it('refuses bad limits and lengths', () => {
    expect(() => packByTokens([1], { maxTokens: 0, maxSequences: 1 })).toThrow('maxTokens must be a positive integer, got 0');
    expect(() => packByTokens([1], { maxTokens: 2.5, maxSequences: 1 })).toThrow('maxTokens must be a positive integer');
    expect(() => packByTokens([1], { maxTokens: 4, maxSequences: 0 })).toThrow('maxSequences must be a positive integer or Infinity, got 0');
    expect(() => packByTokens([1, 0], { maxTokens: 4, maxSequences: 2 })).toThrow('sequence 1: length must be a positive integer, got 0');
  });
});

describe('paddedTokens', () => {
  it('is size × longest per micro-batch', () => {
    expect(paddedTokens([3, 5, 4, 2], [[0, 1], [2, 3]])).toEqual([10, 8]);
  });
});
