// The GRPO loss reference: hand-computed tables for each aggregation, clipping both ways, KL and masks.
import { describe, expect, it } from 'vitest';
import { grpoLoss, type GrpoSequence } from './grpo.js';

const ln = Math.log;

describe('grpoLoss', () => {
  // Chain a: 2 tokens, A = +1. Token 1: new = old → ρ = 1, term −1. Token 2: ρ = 1.5 > 1.2 → clipped
  // term min(1.5, 1.2)·1 = 1.2 → −1.2. ref = new on both → k3 = 0.
  // Chain b: 1 token, A = −1, ρ = 0.5 < 0.8: min(0.5·(−1), 0.8·(−1)) = −0.8 → +0.8 (clip active).
  const seqs: GrpoSequence[] = [
    { newLogprobs: [-1, ln(1.5) - 2], oldLogprobs: [-1, -2], referencePolicyLogprobs: [-1, ln(1.5) - 2], advantage: 1 },
    { newLogprobs: [ln(0.5) - 1], oldLogprobs: [-1], referencePolicyLogprobs: [ln(0.5) - 1], advantage: -1 },
  ];

  it("'dr-grpo': Σℓ / (G · maxCompletionLength)", () => {
    // (−1 − 1.2 + 0.8) / (2 · 2) = −0.35; with a budget of 10: −1.4 / 20 = −0.07
    const r = grpoLoss(seqs);
    expect(r.loss).toBeCloseTo(-0.35, 14);
    expect(r.klLoss).toBe(0);
    expect(r.tokenCount).toBe(3);
    expect(r.clippedFraction).toBeCloseTo(2 / 3, 14);
    expect(r.perToken[0]![0]).toBeCloseTo(-1, 14);
    expect(r.perToken[0]![1]).toBeCloseTo(-1.2, 14);
    expect(r.perToken[1]![0]).toBeCloseTo(0.8, 14);
    expect(grpoLoss(seqs, { maxCompletionLength: 10 }).loss).toBeCloseTo(-0.07, 14);
  });

  it("'sequence-mean': mean per sequence, then mean", () => {
    // a: (−1 − 1.2)/2 = −1.1; b: 0.8 → (−1.1 + 0.8)/2 = −0.15
    expect(grpoLoss(seqs, { aggregation: 'sequence-mean' }).loss).toBeCloseTo(-0.15, 14);
  });

  it("'token-mean': mean over all unmasked tokens", () => {
    // (−1 − 1.2 + 0.8) / 3 = −0.4666…
    expect(grpoLoss(seqs, { aggregation: 'token-mean' }).loss).toBeCloseTo(-1.4 / 3, 14);
  });

  it('asymmetric clip range (ε_high = 0.28) changes only the upper clip', () => {
    // token 2 of a: min(1.5, 1.28) = 1.28 → (−1 − 1.28 + 0.8)/4 = −0.37
    expect(grpoLoss(seqs, { epsilonHigh: 0.28 }).loss).toBeCloseTo(-0.37, 14);
  });

  it('a ratio inside the clip range is not clipped; positive advantage with a low ratio is not clipped', () => {
    // ρ = 0.5, A = +1: min(0.5, 0.8) = 0.5 → term −0.5 and the clip is not the active side
    const r = grpoLoss([{ newLogprobs: [ln(0.5)], oldLogprobs: [0], referencePolicyLogprobs: [ln(0.5)], advantage: 1 }]);
    expect(r.loss).toBeCloseTo(-0.5, 14);
    expect(r.clippedFraction).toBe(0);
  });

  it('adds β·k3 with k3 = exp(ref − new) − (ref − new) − 1', () => {
    // new = old = −1, A = 0: policy term 0. ref − new = 1: k3 = e − 2 = 0.718281828…; β = 0.1
    const r = grpoLoss([{ newLogprobs: [-1], oldLogprobs: [-1], referencePolicyLogprobs: [0], advantage: 0 }], { klBeta: 0.1 });
    expect(r.klLoss).toBeCloseTo(0.1 * (Math.E - 2), 14);
    expect(r.loss).toBeCloseTo(0.1 * (Math.E - 2), 14);
    expect(r.policyLoss).toBeCloseTo(0, 14);
    // default β = 0.001
    expect(grpoLoss([{ newLogprobs: [-1], oldLogprobs: [-1], referencePolicyLogprobs: [0], advantage: 0 }]).klLoss).toBeCloseTo(0.001 * (Math.E - 2), 16);
  });

  it('masks padding tokens and, when asked, truncated completions', () => {
    const padded: GrpoSequence = { newLogprobs: [-1, -5], oldLogprobs: [-1, -1], referencePolicyLogprobs: [-1, -5], advantage: 2, mask: [1, 0] };
    // only token 1 counts: −2 / (1 · 2) with 'dr-grpo'; 'token-mean' −2 / 1
    expect(grpoLoss([padded]).loss).toBeCloseTo(-1, 14);
    expect(grpoLoss([padded], { aggregation: 'token-mean' }).loss).toBeCloseTo(-2, 14);
    const truncated: GrpoSequence = { newLogprobs: [-1], oldLogprobs: [-1], referencePolicyLogprobs: [-1], advantage: 3, truncated: true };
    // masked: only `padded` counts. dr-grpo: −2 / (2 · 2) = −0.5; sequence-mean skips the empty one: −2
    expect(grpoLoss([padded, truncated]).loss).toBeCloseTo(-0.5, 14);
    expect(grpoLoss([padded, truncated], { aggregation: 'sequence-mean' }).loss).toBeCloseTo(-2, 14);
    // not masked: token-mean (−2 − 3)/2
    expect(grpoLoss([padded, truncated], { maskTruncated: false, aggregation: 'token-mean' }).loss).toBeCloseTo(-2.5, 14);
    // everything masked: zero loss in every aggregation
    for (const aggregation of ['dr-grpo', 'sequence-mean', 'token-mean'] as const) {
      const r = grpoLoss([truncated], { aggregation });
      expect(r.loss).toBe(0);
      expect(r.tokenCount).toBe(0);
      expect(r.clippedFraction).toBe(0);
    }
  });

  it('rejects inconsistent sequences and bad options, naming them', () => {
    const ok: GrpoSequence = { newLogprobs: [-1], oldLogprobs: [-1], referencePolicyLogprobs: [-1], advantage: 1 };
    expect(() => grpoLoss([])).toThrow('GRPO loss needs at least one sequence');
    expect(() => grpoLoss([{ ...ok, oldLogprobs: [-1, -2] }])).toThrow('sequences[0]: newLogprobs, oldLogprobs and referencePolicyLogprobs must have the same length (1, 2, 1)');
    expect(() => grpoLoss([ok, { ...ok, newLogprobs: [Number.NaN] }])).toThrow('sequences[1].newLogprobs[0] is not a finite number');
    expect(() => grpoLoss([{ ...ok, advantage: Number.NaN }])).toThrow('sequences[0].advantage');
    expect(() => grpoLoss([{ ...ok, mask: [1, 1] }])).toThrow('sequences[0].mask has 2 entries for 1 tokens');
    expect(() => grpoLoss([{ ...ok, mask: [0.5] }])).toThrow('sequences[0].mask[0] must be 0 or 1, got 0.5');
    expect(() => grpoLoss([{ ...ok, truncated: 'yes' as never }])).toThrow('sequences[0].truncated must be a boolean');
    expect(() => grpoLoss([ok], { aggregation: 'sum' as never })).toThrow('GRPO option aggregation must be one of');
    expect(() => grpoLoss([ok], { epsilonLow: 1.5 })).toThrow('GRPO option epsilonLow');
    expect(() => grpoLoss([ok], { epsilonHigh: -0.1 })).toThrow('GRPO option epsilonHigh');
    expect(() => grpoLoss([ok], { klBeta: -1 })).toThrow('GRPO option klBeta');
    expect(() => grpoLoss([ok], { maskTruncated: 1 as never })).toThrow('GRPO option maskTruncated must be a boolean');
    expect(() => grpoLoss([ok], { maxCompletionLength: 0 })).toThrow('GRPO option maxCompletionLength');
    expect(() => grpoLoss([{ ...ok, newLogprobs: [-1, -1], oldLogprobs: [-1, -1], referencePolicyLogprobs: [-1, -1] }], { maxCompletionLength: 1 })).toThrow(
      'GRPO option maxCompletionLength 1 is shorter than a sequence of 2 tokens',
    );
    expect(() => grpoLoss([ok], { beta: 1 } as never)).toThrow('unknown GRPO loss option "beta"');
  });
});
