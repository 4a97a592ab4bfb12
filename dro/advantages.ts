// Group-relative advantages for GRPO: each chain's reward against its group's mean, optionally scaled by
// the group's population std (Dr. GRPO argues for 'none'; 'std' is the GRPO default and ours).
import { allEqual, assertFiniteVector, assertKnownKeys, assertNumberIn, assertOneOf, mean, populationStd } from './stats.js';

export interface AdvantageOptions {
  /** 'std': divide by (population std + epsilon); 'none': only subtract the mean. */
  scale: 'std' | 'none';
  /** Added to the std so near-equal rewards do not explode. */
  epsilon: number;
}

export const DEFAULT_ADVANTAGE_OPTIONS: Readonly<AdvantageOptions> = Object.freeze({ scale: 'std', epsilon: 1e-4 });

export function groupAdvantages(rewards: readonly number[], options: Partial<AdvantageOptions> = {}): number[] {
  assertKnownKeys(options, Object.keys(DEFAULT_ADVANTAGE_OPTIONS), 'advantage');
  const o = { ...DEFAULT_ADVANTAGE_OPTIONS, ...options };
  assertOneOf(o.scale, ['std', 'none'] as const, 'advantage option scale');
  assertNumberIn(o.epsilon, 'advantage option epsilon', 0, Infinity);
  assertFiniteVector(rewards, 'rewards', { nonEmpty: true });
  // Exact zeros for a group without spread: the mean of equal floats can differ from them by an ulp.
  if (allEqual(rewards)) return rewards.map(() => 0);
  const m = mean(rewards);
  const denominator = o.scale === 'std' ? populationStd(rewards) + o.epsilon : 1;
  return rewards.map((r) => (r - m) / denominator);
}
