// Sampling metrics shared by the tasks: the unbiased pass@k estimator (Chen et al., 2021, "Evaluating
// Large Language Models Trained on Code") and its mean over examples.

function assertCount(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`passAtK: ${name} must be a non-negative integer, got ${value}`);
}

/**
 * Probability that at least one of k completions drawn without replacement from n (c of them correct)
 * is correct: 1 − C(n−c, k)/C(n, k). Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), because the binomials
 * overflow (and lose precision) long before n reaches realistic sample counts.
 */
export function passAtK(n: number, c: number, k: number): number {
  assertCount(n, 'n');
  assertCount(c, 'c');
  assertCount(k, 'k');
  if (n < 1) throw new RangeError(`passAtK: n must be at least 1, got ${n}`);
  if (c > n) throw new RangeError(`passAtK: c (${c}) must not exceed n (${n})`);
  if (k < 1 || k > n) throw new RangeError(`passAtK: k must be in [1, n = ${n}], got ${k}`);
  // Fewer than k incorrect samples: every draw of k contains a correct one.
  if (n - c < k) return 1;
  let allWrong = 1;
  for (let i = n - c + 1; i <= n; i++) allWrong *= 1 - k / i;
  return 1 - allWrong;
}

/** Mean of passAtK over examples, each with its own n (samples) and c (correct samples). */
export function meanPassAtK(correctCounts: readonly { n: number; c: number }[], k: number): number {
  if (correctCounts.length === 0) throw new RangeError('meanPassAtK: no examples to average');
  let sum = 0;
  for (const { n, c } of correctCounts) sum += passAtK(n, c, k);
  return sum / correctCounts.length;
}

/**
 * pass@k for k = 1, 2, 4, … up to the smallest n over the examples, and at that n itself (so n = 8 gives
 * pass@1, pass@2, pass@4, pass@8 as in the paper's tables; n = 6 gives pass@1, pass@2, pass@4, pass@6),
 * keyed "pass@k".
 */
export function passAtKTable(correctCounts: readonly { n: number; c: number }[]): Record<string, number> {
  if (correctCounts.length === 0) throw new RangeError('passAtKTable: no examples to average');
  const minN = Math.min(...correctCounts.map((x) => x.n));
  const ks: number[] = [];
  for (let k = 1; k < minN; k *= 2) ks.push(k);
  ks.push(minN);
  return Object.fromEntries(ks.map((k) => [`pass@${k}`, meanPassAtK(correctCounts, k)]));
}
