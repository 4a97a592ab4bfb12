// Plain reference implementation of the GRPO policy loss value, written for clarity, not speed: the
// engine's training graph is checked against it. Per token t of chain i:
//   ρ = exp(logπ_new − logπ_old),  surrogate = min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)·A),
//   k3 = exp(ref − new) − (ref − new) − 1,  ℓ = −surrogate + β·k3,
// then aggregated over the unmasked tokens by 'dr-grpo' (Dr. GRPO: Σℓ / (G · maxCompletionLength)),
// 'sequence-mean' (the original GRPO) or 'token-mean' (DAPO).
import { assertFiniteVector, assertKnownKeys, assertNumberIn, assertOneOf, DroInputError } from './stats.js';

export const AGGREGATIONS = ['dr-grpo', 'sequence-mean', 'token-mean'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

export interface GrpoLossOptions {
  epsilonLow: number;
  epsilonHigh: number;
  /** β: weight of the k3 KL estimate to the reference policy. */
  klBeta: number;
  aggregation: Aggregation;
  /** Truncated completions (no end of sequence within the budget) contribute no tokens. */
  maskTruncated: boolean;
  /** 'dr-grpo' divisor per chain: the generation budget in tokens. Default: the longest sequence given. */
  maxCompletionLength?: number;
}

export const DEFAULT_GRPO_LOSS_OPTIONS: Readonly<GrpoLossOptions> = Object.freeze({
  epsilonLow: 0.2,
  epsilonHigh: 0.2,
  klBeta: 0.001,
  aggregation: 'dr-grpo',
  maskTruncated: true,
});

export interface GrpoSequence {
  /** log π_θ of each completion token under the policy being trained. */
  newLogprobs: readonly number[];
  /** log π_θ_old of the same tokens, under the policy that sampled them. */
  oldLogprobs: readonly number[];
  /** log π_ref of the same tokens, under the frozen reference policy. */
  referencePolicyLogprobs: readonly number[];
  advantage: number;
  /** 1 for completion tokens that count, 0 for padding; default all 1. */
  mask?: readonly number[];
  /** True when the completion hit the token budget without finishing. */
  truncated?: boolean;
}

export interface GrpoLossResult {
  loss: number;
  /** The −surrogate part of `loss`, with the same aggregation. */
  policyLoss: number;
  /** The β·k3 part of `loss`, with the same aggregation. */
  klLoss: number;
  /** ℓ per token (0 where masked). */
  perToken: number[][];
  /** Share of unmasked tokens where the clipped term was the smaller (the clip was active). */
  clippedFraction: number;
  tokenCount: number;
}

export function grpoLoss(sequences: readonly GrpoSequence[], options: Partial<GrpoLossOptions> = {}): GrpoLossResult {
  assertKnownKeys(options, [...Object.keys(DEFAULT_GRPO_LOSS_OPTIONS), 'maxCompletionLength'], 'GRPO loss');
  const o = { ...DEFAULT_GRPO_LOSS_OPTIONS, ...options };
  assertNumberIn(o.epsilonLow, 'GRPO option epsilonLow', 0, 1);
  assertNumberIn(o.epsilonHigh, 'GRPO option epsilonHigh', 0, Infinity);
  assertNumberIn(o.klBeta, 'GRPO option klBeta', 0, Infinity);
  assertOneOf(o.aggregation, AGGREGATIONS, 'GRPO option aggregation');
  if (typeof o.maskTruncated !== 'boolean') throw new DroInputError(`GRPO option maskTruncated must be a boolean, got ${JSON.stringify(o.maskTruncated)}`);
  if (sequences.length === 0) throw new DroInputError('GRPO loss needs at least one sequence');

  const masks = sequences.map((s, i) => validateSequence(s, i, o.maskTruncated));
  const longest = Math.max(...sequences.map((s) => s.newLogprobs.length));
  const budget = o.maxCompletionLength ?? longest;
  assertNumberIn(budget, 'GRPO option maxCompletionLength', 1, Infinity, { integer: true });
  if (budget < longest) throw new DroInputError(`GRPO option maxCompletionLength ${budget} is shorter than a sequence of ${longest} tokens`);

  const policyTerms: number[][] = [];
  const klTerms: number[][] = [];
  let clipped = 0;
  let tokenCount = 0;
  sequences.forEach((s, i) => {
    const policyRow: number[] = [];
    const klRow: number[] = [];
    for (let t = 0; t < s.newLogprobs.length; t++) {
      if (masks[i]![t] === 0) {
        policyRow.push(0);
        klRow.push(0);
        continue;
      }
      const ratio = Math.exp(s.newLogprobs[t]! - s.oldLogprobs[t]!);
      const unclipped = ratio * s.advantage;
      const clippedTerm = Math.min(Math.max(ratio, 1 - o.epsilonLow), 1 + o.epsilonHigh) * s.advantage;
      if (clippedTerm < unclipped) clipped++;
      const logRatioRef = s.referencePolicyLogprobs[t]! - s.newLogprobs[t]!;
      policyRow.push(-Math.min(unclipped, clippedTerm));
      klRow.push(o.klBeta * (Math.exp(logRatioRef) - logRatioRef - 1));
      tokenCount++;
    }
    policyTerms.push(policyRow);
    klTerms.push(klRow);
  });

  const aggregate = (terms: number[][]): number => {
    switch (o.aggregation) {
      case 'dr-grpo':
        return sumAll(terms) / (sequences.length * budget);
      case 'token-mean':
        return tokenCount === 0 ? 0 : sumAll(terms) / tokenCount;
      case 'sequence-mean': {
        const means = terms.flatMap((row, i) => {
          const n = masks[i]!.reduce((a, b) => a + b, 0);
          return n === 0 ? [] : [row.reduce((a, b) => a + b, 0) / n];
        });
        return means.length === 0 ? 0 : means.reduce((a, b) => a + b, 0) / means.length;
      }
    }
  };
  const policyLoss = aggregate(policyTerms);
  const klLoss = aggregate(klTerms);
  return {
    loss: policyLoss + klLoss,
    policyLoss,
    klLoss,
    perToken: policyTerms.map((row, i) => row.map((v, t) => v + klTerms[i]![t]!)),
    clippedFraction: tokenCount === 0 ? 0 : clipped / tokenCount,
    tokenCount,
  };
}

function sumAll(rows: number[][]): number {
  let total = 0;
  for (const row of rows) for (const v of row) total += v;
  return total;
}

/** Checks one sequence and returns its effective 0/1 mask. */
function validateSequence(s: GrpoSequence, i: number, maskTruncated: boolean): number[] {
  const what = `sequences[${i}]`;
  const T = s.newLogprobs?.length;
  assertFiniteVector(s.newLogprobs, `${what}.newLogprobs`);
  assertFiniteVector(s.oldLogprobs, `${what}.oldLogprobs`);
  assertFiniteVector(s.referencePolicyLogprobs, `${what}.referencePolicyLogprobs`);
  if (s.oldLogprobs.length !== T || s.referencePolicyLogprobs.length !== T) {
    throw new DroInputError(`${what}: newLogprobs, oldLogprobs and referencePolicyLogprobs must have the same length (${T}, ${s.oldLogprobs.length}, ${s.referencePolicyLogprobs.length})`);
  }
  assertNumberIn(s.advantage, `${what}.advantage`, -Infinity, Infinity);
  const mask = s.mask ?? s.newLogprobs.map(() => 1);
  if (mask.length !== T) throw new DroInputError(`${what}.mask has ${mask.length} entries for ${T} tokens`);
  mask.forEach((m, t) => {
    if (m !== 0 && m !== 1) throw new DroInputError(`${what}.mask[${t}] must be 0 or 1, got ${String(m)}`);
  });
  if (s.truncated !== undefined && typeof s.truncated !== 'boolean') throw new DroInputError(`${what}.truncated must be a boolean`);
  return s.truncated && maskTruncated ? mask.map(() => 0) : [...mask];
}
