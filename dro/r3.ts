// The Reasoning Reflection Reward R3 (DRO, arXiv 2506.13351 §3): reference tokens whose likelihood varies
// across the G sampled chains (high σ_j) are the ones that reflect the reasoning, so they get the weight.
//
// Our choices where the paper leaves them open (also in the README):
// - σ_j is the population std over chains (divide by G).
// - w_Δ is selectable: 'linear' (default) ∝ max(σ_j − Δ, 0) with Δ = 0, 'softmax' ∝ exp(σ_j / τ) with
//   τ = 1, 'topk' (equal weight on the topK largest σ_j), or 'uniform' (the paper's "aggregate"
//   baseline). Weights are always rescaled to sum to L, so reward scale does not depend on the mode.
// - Masked-chain contrast subtracts log π(y_j | q, y_<j) scored with the chain removed.
// - Certainty propagation takes reflective tokens as σ_k ≥ the 0.9-quantile of σ (linear interpolation)
//   and adds log(p_k + (1 − p_k)(1 − e^{−γ d})) with γ = 0.5 for every later token at distance d.
import { assertFiniteMatrix, assertFiniteVector, assertKnownKeys, assertNumberIn, assertOneOf, DroInputError, populationStd, quantile } from './stats.js';

export const WEIGHTINGS = ['uniform', 'linear', 'softmax', 'topk'] as const;
export const CONTRASTS = ['none', 'masked', 'propagation'] as const;
export type Weighting = (typeof WEIGHTINGS)[number];
export type Contrast = (typeof CONTRASTS)[number];

export interface R3Options {
  /** How σ_j becomes a token weight w_Δ(σ_j). */
  weighting: Weighting;
  /** Δ for 'linear': tokens with σ_j ≤ Δ get no weight. */
  delta: number;
  /** τ for 'softmax'. */
  temperature: number;
  /** How many tokens 'topk' weights. */
  topK: number;
  /** Correction for later reference tokens that "rescue" a bad chain. */
  contrast: Contrast;
  /** 'propagation': tokens with σ at or above this quantile of σ are reflective. */
  reflectiveQuantile: number;
  /** 'propagation': certainty decay rate γ per token of distance. */
  gamma: number;
}

export const DEFAULT_R3_OPTIONS: Readonly<R3Options> = Object.freeze({
  weighting: 'linear',
  delta: 0,
  temperature: 1,
  topK: 8,
  contrast: 'none',
  reflectiveQuantile: 0.9,
  gamma: 0.5,
});

export interface R3Result {
  /** R3_i for each chain. */
  rewards: number[];
  /** σ_j for each reference token. */
  tokenStd: number[];
  /** w_j for each reference token; sums to L. */
  tokenWeights: number[];
}

/** Validates and completes R3 options; unknown keys and out-of-range values are errors. */
export function resolveR3Options(options: Partial<R3Options> = {}): R3Options {
  assertKnownKeys(options, Object.keys(DEFAULT_R3_OPTIONS), 'R3');
  const o: R3Options = { ...DEFAULT_R3_OPTIONS, ...options };
  assertOneOf(o.weighting, WEIGHTINGS, 'R3 option weighting');
  assertOneOf(o.contrast, CONTRASTS, 'R3 option contrast');
  assertNumberIn(o.delta, 'R3 option delta', -Infinity, Infinity);
  assertNumberIn(o.temperature, 'R3 option temperature', 0, Infinity, { minExclusive: true });
  assertNumberIn(o.topK, 'R3 option topK', 1, Infinity, { integer: true });
  assertNumberIn(o.reflectiveQuantile, 'R3 option reflectiveQuantile', 0, 1);
  assertNumberIn(o.gamma, 'R3 option gamma', 0, Infinity);
  return o;
}

/** σ_j: population std over chains of each reference token's log-prob. */
export function tokenStd(outcomeLogprobs: readonly (readonly number[])[]): number[] {
  const [, L] = assertFiniteMatrix(outcomeLogprobs, 'outcomeLogprobs');
  const out: number[] = [];
  for (let j = 0; j < L; j++) out.push(populationStd(outcomeLogprobs.map((row) => row[j]!)));
  return out;
}

/** w_Δ(σ_j) for every reference token, rescaled to sum to L (mean 1). */
export function reflectiveTokenWeights(sigma: readonly number[], options: Partial<R3Options> = {}): number[] {
  const o = resolveR3Options(options);
  assertFiniteVector(sigma, 'tokenStd', { nonEmpty: true });
  const L = sigma.length;
  let raw: number[];
  switch (o.weighting) {
    case 'uniform':
      raw = sigma.map(() => 1);
      break;
    case 'linear':
      raw = sigma.map((s) => Math.max(s - o.delta, 0));
      break;
    case 'softmax': {
      // Shift by the max so exp never overflows; the shift cancels in the normalisation.
      const top = Math.max(...sigma);
      raw = sigma.map((s) => Math.exp((s - top) / o.temperature));
      break;
    }
    case 'topk': {
      const order = sigma.map((s, j) => ({ s, j })).sort((a, b) => b.s - a.s || a.j - b.j);
      raw = sigma.map(() => 0);
      for (const { j } of order.slice(0, Math.min(o.topK, L))) raw[j] = 1;
      break;
    }
  }
  const total = raw.reduce((a, b) => a + b, 0);
  if (total === 0) return sigma.map(() => 1);
  return raw.map((w) => (w * L) / total);
}

/**
 * The chain-conditioned log-probs after the chosen contrast: x[i][j].
 * Exported for tests and for diagnostics that want the per-token terms.
 */
export function contrastedLogprobs(
  outcomeLogprobs: readonly (readonly number[])[],
  sigma: readonly number[],
  options: R3Options,
  maskedLogprobs?: readonly number[],
): number[][] {
  const L = sigma.length;
  switch (options.contrast) {
    case 'none':
      return outcomeLogprobs.map((row) => [...row]);
    case 'masked': {
      if (maskedLogprobs === undefined) throw new DroInputError("contrast 'masked' needs maskedLogprobs (the reference scored with the chain removed)");
      assertFiniteVector(maskedLogprobs, 'maskedLogprobs');
      if (maskedLogprobs.length !== L) throw new DroInputError(`maskedLogprobs has ${maskedLogprobs.length} entries, the reference has ${L} tokens`);
      return outcomeLogprobs.map((row) => row.map((lp, j) => lp - maskedLogprobs[j]!));
    }
    case 'propagation': {
      const threshold = quantile(sigma, options.reflectiveQuantile);
      const reflective = sigma.flatMap((s, k) => (s >= threshold ? [k] : []));
      return outcomeLogprobs.map((row) =>
        row.map((lp, j) => {
          let x = lp;
          for (const k of reflective) {
            if (k >= j) break;
            // log(p + (1 − p)(1 − e^{−γd})) = log1p(−(1 − p) e^{−γd}), and 1 − p = −expm1(log p):
            // exact even when p is within rounding of 1.
            x += Math.log1p(Math.expm1(row[k]!) * Math.exp(-options.gamma * (j - k)));
          }
          return x;
        }),
      );
    }
  }
}

/**
 * R3_i = Σ_j w_j · x[i][j] for `outcomeLogprobs[i][j]` = log π(y_j | q, c_i, y_<j) (G chains × L tokens).
 * `maskedLogprobs[j]` = log π(y_j | q, y_<j) without any chain, required for contrast 'masked'.
 */
export function reasoningReflectionReward(
  outcomeLogprobs: readonly (readonly number[])[],
  options: Partial<R3Options> = {},
  maskedLogprobs?: readonly number[],
): R3Result {
  const o = resolveR3Options(options);
  const sigma = tokenStd(outcomeLogprobs);
  const weights = reflectiveTokenWeights(sigma, o);
  const x = contrastedLogprobs(outcomeLogprobs, sigma, o, maskedLogprobs);
  const rewards = x.map((row) => row.reduce((acc, v, j) => acc + weights[j]! * v, 0));
  return { rewards, tokenStd: sigma, tokenWeights: weights };
}
