// Length penalty, reward combination, numeric answer parsing and the ROUGE baseline rewards: tables.
import { describe, expect, it } from 'vitest';
import { combineRewards, lengthPenalty, parseNumericAnswer, rouge1F1, rouge2F1, rougeLF1, rougeTokens } from './rewards.js';

describe('lengthPenalty', () => {
  it('is 1 − β·|ref − ans|/ref', () => {
    expect(lengthPenalty(10, 10, 0.5)).toBe(1);
    expect(lengthPenalty(10, 5, 0.5)).toBe(0.75); // 1 − 0.5·5/10
    expect(lengthPenalty(10, 20, 0.5)).toBe(0.5); // 1 − 0.5·10/10
    expect(lengthPenalty(4, 0, 1)).toBe(0); // 1 − 1·4/4
    expect(lengthPenalty(4, 12, 1)).toBe(-1); // 1 − 8/4: a long ramble is penalised below zero
    expect(lengthPenalty(7, 3, 0)).toBe(1);
  });

  it('rejects a zero reference length and negative inputs', () => {
    expect(() => lengthPenalty(0, 1, 1)).toThrow('referenceLength must be a number in (0, ∞), got 0');
    expect(() => lengthPenalty(3, -1, 1)).toThrow('answerLength');
    expect(() => lengthPenalty(3, 1, -0.1)).toThrow('beta');
    expect(() => lengthPenalty(3, Number.NaN, 1)).toThrow('answerLength');
  });
});

describe('combineRewards', () => {
  it('is r3_i / L + lengthWeight · penalty_i', () => {
    // (−8/4 + 0.5·1, −4/4 + 0.5·0.5) = (−1.5, −0.75)
    expect(combineRewards([-8, -4], [1, 0.5], { referenceLength: 4, lengthWeight: 0.5 })).toEqual([-1.5, -0.75]);
    expect(combineRewards([], [], { referenceLength: 1, lengthWeight: 1 })).toEqual([]);
  });

  it('rejects mismatched lengths and bad options', () => {
    expect(() => combineRewards([1, 2], [1], { referenceLength: 4, lengthWeight: 1 })).toThrow('r3 has 2 entries but lengthPenalties has 1');
    expect(() => combineRewards([1], [1], { referenceLength: 0, lengthWeight: 1 })).toThrow('referenceLength');
    expect(() => combineRewards([1], [Number.NaN], { referenceLength: 1, lengthWeight: 1 })).toThrow('lengthPenalties[0] is not a finite number');
    expect(() => combineRewards([1], [1], { referenceLength: 1, lengthWeight: 1, extra: 1 } as never)).toThrow('unknown combineRewards option "extra"');
  });
});

describe('parseNumericAnswer', () => {
  const table: [string, { value: number; percent: boolean } | undefined][] = [
    ['42', { value: 42, percent: false }],
    ['-3.5', { value: -3.5, percent: false }],
    ['1,234.5', { value: 1234.5, percent: false }],
    ['1,234,567', { value: 1234567, percent: false }],
    ['$12', { value: 12, percent: false }],
    ['-$1,000', { value: -1000, percent: false }],
    ['(3.2)', { value: -3.2, percent: false }],
    ['12.5%', { value: 12.5, percent: true }],
    ['.5', { value: 0.5, percent: false }],
    ['1e-3', { value: 0.001, percent: false }],
    ['7.', { value: 7, percent: false }],
    ['1,23', undefined],
    ['yes', undefined],
    ['12 apples', undefined],
    ['', undefined],
  ];
  for (const [text, expected] of table) it(JSON.stringify(text), () => expect(parseNumericAnswer(text)).toEqual(expected));
});

describe('rouge1F1', () => {
  it('is the F1 of clipped unigram overlap on lower-cased word tokens', () => {
    expect(rougeTokens("The cat's hat, the BAT!")).toEqual(['the', 'cat', 's', 'hat', 'the', 'bat']);
    expect(rouge1F1('the cat sat', 'the cat sat')).toBe(1);
    // pred (the, cat, sat, down), ref (the, cat, sat): overlap 3, P 3/4, R 1 → 2·0.75/1.75 = 6/7
    expect(rouge1F1('The cat sat down', 'the cat sat')).toBeCloseTo(6 / 7, 14);
    // pred (the, the, the), ref (the, cat): clipped overlap 1, P 1/3, R 1/2 → 2·(1/6)/(5/6) = 0.4
    expect(rouge1F1('the the the', 'the cat')).toBeCloseTo(0.4, 14);
    expect(rouge1F1('dog', 'cat')).toBe(0);
    expect(rouge1F1('', 'cat')).toBe(0);
    expect(rouge1F1('...', '')).toBe(0);
    expect(rouge1F1('Überprüfung 2024', 'überprüfung')).toBeCloseTo(2 / 3, 14); // P 1/2, R 1
  });
});

describe('rougeLF1', () => {
  it('is the F1 of the longest common subsequence of the tokens', () => {
    expect(rougeLF1('the cat sat', 'The cat sat.')).toBe(1);
    // LCS("a b c d e", "a c e x") = a c e = 3: P 3/5, R 3/4, F1 = 2·(3/5)(3/4)/(3/5+3/4) = 2/3
    expect(rougeLF1('a b c d e', 'a c e x')).toBeCloseTo(2 / 3, 14);
    // Same words, reversed order: ROUGE-1 is 1, but the LCS is 1 token: P = R = 1/3
    expect(rouge1F1('c b a', 'a b c')).toBe(1);
    expect(rougeLF1('c b a', 'a b c')).toBeCloseTo(1 / 3, 14);
    // LCS("x a y b", "a b") = 2: P 2/4, R 2/2, F1 = 2/3
    expect(rougeLF1('x a y b', 'a b')).toBeCloseTo(2 / 3, 14);
    // Repeats are matched once each: LCS("the the the", "the cat") = 1: P 1/3, R 1/2, F1 = 0.4
    expect(rougeLF1('the the the', 'the cat')).toBeCloseTo(0.4, 14);
  });

  it('is 0 without a common token or with an empty side', () => {
    expect(rougeLF1('dog', 'cat')).toBe(0);
    expect(rougeLF1('', 'cat')).toBe(0);
    expect(rougeLF1('cat', '?!')).toBe(0);
  });
});

describe('rouge2F1', () => {
  it('counts clipped bigram overlap', () => {
    expect(rouge2F1('the cat sat', 'the cat sat')).toBe(1);
    // Bigrams: pred {the cat, cat sat, sat down}, ref {the cat, cat sat}: P 2/3, R 1.
    expect(rouge2F1('The cat sat down', 'the cat sat')).toBeCloseTo(0.8, 14);
    // Word order matters, unlike ROUGE-1.
    expect(rouge2F1('sat cat the', 'the cat sat')).toBe(0);
    expect(rouge1F1('sat cat the', 'the cat sat')).toBe(1);
    // Repeated bigrams are clipped to the reference's count: pred has "a a" 3 times, ref once.
    expect(rouge2F1('a a a a', 'a a b')).toBeCloseTo((2 * (1 / 3) * (1 / 2)) / (1 / 3 + 1 / 2), 14);
    expect(rouge2F1('one', 'one')).toBe(0);
    expect(rouge2F1('', 'a b')).toBe(0);
  });
});
