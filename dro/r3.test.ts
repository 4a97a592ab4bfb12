// R3: hand-computed tables for every weighting and contrast, edge cases, properties, an independent slow
// reference, and the paper's mechanism on constructed data (R3 tracks chain quality better than the sum).
import { describe, expect, it } from 'vitest';
import { groupAdvantages } from './advantages.js';
import { contrastedLogprobs, reasoningReflectionReward, reflectiveTokenWeights, resolveR3Options, tokenStd, type R3Options } from './r3.js';
import { uniform } from './random.js';

const ln = Math.log;
const close = (actual: number[], expected: number[], digits = 12): void => {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(a, `index ${i}`).toBeCloseTo(expected[i]!, digits));
};

// G = 2 chains, L = 2 tokens. σ_0 = pop std(−1, −3) = 1, σ_1 = pop std(−2, −2) = 0.
const LP = [
  [-1, -2],
  [-3, -2],
];

describe('tokenStd', () => {
  it('is the population std of each column', () => {
    close(tokenStd(LP), [1, 0]);
    // (0, 2, 4): mean 2, squares 4 + 0 + 4 = 8, / 3 → sqrt(8/3)
    close(tokenStd([[0], [2], [4]]), [Math.sqrt(8 / 3)]);
  });
});

describe('reflectiveTokenWeights and rewards, every weighting (contrast none)', () => {
  const table: [string, Partial<R3Options>, number[], number[]][] = [
    // all 1: rewards are plain sums −1−2 = −3 and −3−2 = −5
    ['uniform', { weighting: 'uniform' }, [1, 1], [-3, -5]],
    // raw (1, 0) → scaled to sum 2: (2, 0); rewards 2·(−1) = −2, 2·(−3) = −6
    ['linear Δ=0', { weighting: 'linear' }, [2, 0], [-2, -6]],
    // raw (0.5, 0) → (2, 0)
    ['linear Δ=0.5', { weighting: 'linear', delta: 0.5 }, [2, 0], [-2, -6]],
    // raw (0, 0): every term 0 → uniform
    ['linear Δ=2 (all zero → uniform)', { weighting: 'linear', delta: 2 }, [1, 1], [-3, -5]],
    // raw (e^0, e^−1) → 2/(1+e^−1) = 1.4621171572600098, 2e^−1/(1+e^−1) = 0.5378828427399902
    // rewards −1·1.46212 − 2·0.53788 = −2.5378828427399904; −3·1.46212 − 2·0.53788 = −5.4621171572600105
    ['softmax τ=1', { weighting: 'softmax' }, [1.4621171572600098, 0.5378828427399902], [-2.5378828427399904, -5.4621171572600105]],
    // τ = 0.5: raw (1, e^−2) → 2/(1+e^−2) = 1.7615941559557646, 0.2384058440442351
    ['softmax τ=0.5', { weighting: 'softmax', temperature: 0.5 }, [1.7615941559557646, 0.2384058440442351], [-2.2384058440442347, -5.761594155955764]],
    ['topk 1', { weighting: 'topk', topK: 1 }, [2, 0], [-2, -6]],
    ['topk ≥ L (uniform)', { weighting: 'topk', topK: 5 }, [1, 1], [-3, -5]],
  ];
  for (const [name, options, weights, rewards] of table) {
    it(name, () => {
      const result = reasoningReflectionReward(LP, options);
      close(result.tokenWeights, weights);
      close(result.rewards, rewards);
      close(result.tokenStd, [1, 0]);
      expect(result.tokenWeights.reduce((a, b) => a + b, 0)).toBeCloseTo(2, 12);
    });
  }

  it('topk breaks ties in σ by the lower token index', () => {
    expect(reflectiveTokenWeights([0.5, 0.1, 0.5, 0.5], { weighting: 'topk', topK: 2 })).toEqual([2, 0, 2, 0]);
  });

  it('equal σ everywhere gives uniform weights in every mode', () => {
    for (const weighting of ['uniform', 'linear', 'softmax', 'topk'] as const) {
      const w = reflectiveTokenWeights([0.3, 0.3, 0.3], { weighting, topK: 3 });
      close(w, [1, 1, 1]);
    }
  });

  it('softmax does not overflow for large σ', () => {
    close(reflectiveTokenWeights([1000, 1000], { weighting: 'softmax', temperature: 0.01 }), [1, 1]);
  });
});

describe('contrasts', () => {
  it("'masked' subtracts the chain-free log-prob of each token", () => {
    // x = [[−1+1.5, −2+2.5], [−3+1.5, −2+2.5]] = [[0.5, 0.5], [−1.5, 0.5]]; linear w = (2, 0) → (1, −3)
    const r = reasoningReflectionReward(LP, { contrast: 'masked' }, [-1.5, -2.5]);
    close(r.rewards, [1, -3]);
    // uniform: 0.5 + 0.5 = 1 and −1.5 + 0.5 = −1
    close(reasoningReflectionReward(LP, { contrast: 'masked', weighting: 'uniform' }, [-1.5, -2.5]).rewards, [1, -1]);
  });

  it("'propagation' adds log(p_k + (1 − p_k)(1 − e^{−γd})) from each reflective token to later ones", () => {
    // Column 0 = (ln .5, ln .9): σ_0 = (ln .9 − ln .5)/2 = 0.29389333; σ_1 = σ_2 = 0.
    // 0.9-quantile of (0, 0, 0.29389) = 0 + 0.8·0.29389 = 0.23511 → only token 0 is reflective.
    // chain 0 (p = .5): j=1, d=1: ln(.5 + .5(1 − e^−.5)) = −0.36135; j=2, d=2: ln(.5 + .5(1 − e^−1)) = −0.20327
    //   x0 = (−0.693147, −1.747645, −0.896414), sum −3.337206391963736
    // chain 1 (p = .9): ln(.9 + .1(1 − e^−.5)) = −0.062570, ln(.9 + .1(1 − e^−1)) = −0.037482
    //   x1 = (−0.105361, −1.448865, −0.730629), sum −2.2848541415565817
    const lp = [
      [ln(0.5), ln(0.25), ln(0.5)],
      [ln(0.9), ln(0.25), ln(0.5)],
    ];
    const x = contrastedLogprobs(lp, tokenStd(lp), resolveR3Options({ contrast: 'propagation' }));
    close(x[0]!, [-0.6931471805599453, -1.7476449759286496, -0.8964142354751407]);
    close(x[1]!, [-0.10536051565782628, -1.4488647573225748, -0.7306288685761806]);
    close(reasoningReflectionReward(lp, { contrast: 'propagation', weighting: 'uniform' }).rewards, [-3.337206391963736, -2.2848541415565817]);
    // Linear weights sit on token 0 only (w = 3, 0, 0), which nothing precedes: 3·ln .5, 3·ln .9.
    close(reasoningReflectionReward(lp, { contrast: 'propagation' }).rewards, [3 * ln(0.5), 3 * ln(0.9)]);
  });

  it("'propagation' with γ = 0 adds log p_k itself; a certain token (p = 1) adds nothing", () => {
    const lp = [
      [0, -1],
      [-2, -1],
    ];
    // σ = (1, 0): token 0 reflective. γ = 0 → term ln(p_0) = lp[i][0]: x = [[0, −1 + 0], [−2, −1 − 2]]
    const x = contrastedLogprobs(lp, tokenStd(lp), resolveR3Options({ contrast: 'propagation', gamma: 0 }));
    close(x[0]!, [0, -1]);
    close(x[1]!, [-2, -3]);
  });
});

describe('edge cases', () => {
  it('G = 1: σ is all 0, so every mode falls back to uniform weights and R3 is the plain sum', () => {
    for (const weighting of ['linear', 'softmax', 'topk', 'uniform'] as const) {
      const r = reasoningReflectionReward([[-1, -2, -3]], { weighting, topK: 3 });
      close(r.tokenStd, [0, 0, 0]);
      close(r.tokenWeights, [1, 1, 1]);
      close(r.rewards, [-6]);
    }
  });

  it('L = 1: the single token carries weight 1', () => {
    const r = reasoningReflectionReward([[-1], [-2]]);
    close(r.tokenWeights, [1]);
    close(r.rewards, [-1, -2]);
  });

  it('zero variance in every column gives rewards equal to the sums', () => {
    close(reasoningReflectionReward([[-1, -2], [-1, -2]]).rewards, [-3, -3]);
  });

  it('rejects bad input with a message naming the problem', () => {
    expect(() => reasoningReflectionReward([])).toThrow('outcomeLogprobs has no rows');
    expect(() => reasoningReflectionReward([[], []])).toThrow('outcomeLogprobs has no columns');
    expect(() => reasoningReflectionReward([[-1, -2], [-1]])).toThrow('outcomeLogprobs is ragged: row 0 has 2 entries, row 1 has 1');
    expect(() => reasoningReflectionReward([[-1, Number.NaN]])).toThrow('outcomeLogprobs[0][1] is not a finite number (NaN)');
    expect(() => reasoningReflectionReward([[-1, -Infinity]])).toThrow('outcomeLogprobs[0][1] is not a finite number (-Infinity)');
    expect(() => reasoningReflectionReward(LP, { contrast: 'masked' })).toThrow("contrast 'masked' needs maskedLogprobs");
    expect(() => reasoningReflectionReward(LP, { contrast: 'masked' }, [-1])).toThrow('maskedLogprobs has 1 entries, the reference has 2 tokens');
    expect(() => reasoningReflectionReward(LP, { contrast: 'masked' }, [-1, Number.NaN])).toThrow('maskedLogprobs[1] is not a finite number');
    expect(() => reasoningReflectionReward(LP, { weighting: 'cubic' as never })).toThrow(`R3 option weighting must be one of 'uniform', 'linear', 'softmax', 'topk', got "cubic"`);
    expect(() => reasoningReflectionReward(LP, { contrast: 'both' as never })).toThrow('R3 option contrast must be one of');
    expect(() => reasoningReflectionReward(LP, { temperature: 0 })).toThrow('R3 option temperature must be a number in (0, ∞), got 0');
    expect(() => reasoningReflectionReward(LP, { topK: 1.5 })).toThrow('R3 option topK must be an integer');
    expect(() => reasoningReflectionReward(LP, { reflectiveQuantile: 1.2 })).toThrow('R3 option reflectiveQuantile must be a number in [0, 1]');
    expect(() => reasoningReflectionReward(LP, { gamma: -1 })).toThrow('R3 option gamma');
    expect(() => reasoningReflectionReward(LP, { delta: Number.NaN })).toThrow('R3 option delta');
    expect(() => reasoningReflectionReward(LP, { sharpness: 2 } as never)).toThrow('unknown R3 option "sharpness"');
    expect(() => reflectiveTokenWeights([])).toThrow('tokenStd is empty');
  });
});

/** Deterministic standard normal from a key (Box-Muller on two keyed uniforms). */
function normal(...key: (string | number)[]): number {
  const u1 = Math.max(uniform([...key, 'u1']), 1e-300);
  const u2 = uniform([...key, 'u2']);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

function randomMatrix(G: number, L: number, seed: string): number[][] {
  return Array.from({ length: G }, (_, i) => Array.from({ length: L }, (_, j) => -Math.abs(normal(seed, i, j)) - 0.01));
}

describe('properties', () => {
  it("with 'uniform' weights and no contrast, rewards are the plain sums of log-probs", () => {
    for (let trial = 0; trial < 20; trial++) {
      const lp = randomMatrix(1 + (trial % 6), 1 + ((trial * 7) % 13), `sum-${trial}`);
      close(reasoningReflectionReward(lp, { weighting: 'uniform' }).rewards, lp.map((row) => row.reduce((a, b) => a + b, 0)), 10);
    }
  });

  it('permuting chains permutes rewards, in every mode', () => {
    const lp = randomMatrix(5, 9, 'perm');
    const masked = randomMatrix(1, 9, 'perm-masked')[0]!;
    const order = [3, 0, 4, 1, 2];
    for (const weighting of ['uniform', 'linear', 'softmax', 'topk'] as const) {
      for (const contrast of ['none', 'masked', 'propagation'] as const) {
        const base = reasoningReflectionReward(lp, { weighting, contrast, topK: 3 }, masked).rewards;
        const permuted = reasoningReflectionReward(order.map((i) => lp[i]!), { weighting, contrast, topK: 3 }, masked).rewards;
        close(permuted, order.map((i) => base[i]!), 10);
      }
    }
  });

  it('adding a constant to one column changes no advantage', () => {
    const lp = randomMatrix(6, 8, 'shift');
    for (const weighting of ['uniform', 'linear', 'softmax', 'topk'] as const) {
      const before = groupAdvantages(reasoningReflectionReward(lp, { weighting, topK: 2 }).rewards);
      const shifted = lp.map((row) => row.map((v, j) => (j === 3 ? v - 0.75 : v)));
      const after = groupAdvantages(reasoningReflectionReward(shifted, { weighting, topK: 2 }).rewards);
      close(after, before, 9);
    }
  });
});

/** Slow, obvious R3 straight from the formulas, sharing no code with r3.ts. */
function slowR3(lp: number[][], o: R3Options, masked?: number[]): number[] {
  const G = lp.length;
  const L = lp[0]!.length;
  const sigma: number[] = [];
  for (let j = 0; j < L; j++) {
    let m = 0;
    for (let i = 0; i < G; i++) m += lp[i]![j]! / G;
    let v = 0;
    for (let i = 0; i < G; i++) v += (lp[i]![j]! - m) ** 2 / G;
    sigma.push(Math.sqrt(v));
  }
  let raw: number[];
  if (o.weighting === 'uniform') raw = sigma.map(() => 1);
  else if (o.weighting === 'linear') raw = sigma.map((s) => (s - o.delta > 0 ? s - o.delta : 0));
  else if (o.weighting === 'softmax') raw = sigma.map((s) => Math.exp(s / o.temperature));
  else {
    raw = sigma.map(() => 0);
    const idx = [...sigma.keys()];
    idx.sort((a, b) => (sigma[b]! !== sigma[a]! ? sigma[b]! - sigma[a]! : a - b));
    for (const j of idx.slice(0, o.topK)) raw[j] = 1;
  }
  let total = 0;
  for (const r of raw) total += r;
  const w = total === 0 ? raw.map(() => 1) : raw.map((r) => (r / total) * L);
  const sorted = [...sigma].sort((a, b) => a - b);
  const pos = o.reflectiveQuantile * (L - 1);
  const threshold = sorted[Math.floor(pos)]! + (sorted[Math.ceil(pos)]! - sorted[Math.floor(pos)]!) * (pos - Math.floor(pos));
  return lp.map((row) => {
    let reward = 0;
    for (let j = 0; j < L; j++) {
      let x = row[j]!;
      if (o.contrast === 'masked') x -= masked![j]!;
      if (o.contrast === 'propagation') {
        for (let k = 0; k < j; k++) {
          if (sigma[k]! < threshold) continue;
          const p = Math.exp(row[k]!);
          x += Math.log(p + (1 - p) * (1 - Math.exp(-o.gamma * (j - k))));
        }
      }
      reward += w[j]! * x;
    }
    return reward;
  });
}

describe('agreement with a slow reference implementation', () => {
  it('matches on random inputs for every weighting and contrast', () => {
    let cases = 0;
    for (let trial = 0; trial < 12; trial++) {
      const G = 1 + (trial % 5);
      const L = 1 + ((trial * 5) % 17);
      const lp = randomMatrix(G, L, `ref-${trial}`);
      const masked = randomMatrix(1, L, `ref-masked-${trial}`)[0]!;
      for (const weighting of ['uniform', 'linear', 'softmax', 'topk'] as const) {
        for (const contrast of ['none', 'masked', 'propagation'] as const) {
          const o = resolveR3Options({ weighting, contrast, delta: 0.1, temperature: 0.7, topK: 3, reflectiveQuantile: 0.75, gamma: 0.3 });
          close(reasoningReflectionReward(lp, o, masked).rewards, slowR3(lp, o, masked), 9);
          cases++;
        }
      }
    }
    expect(cases).toBe(144);
  });
});

/** Spearman rank correlation (average ranks for ties). */
function spearman(a: number[], b: number[]): number {
  const ranks = (v: number[]): number[] => {
    const order = v.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(v.length);
    for (let s = 0; s < order.length; ) {
      let e = s;
      while (e + 1 < order.length && order[e + 1]![0] === order[s]![0]) e++;
      for (let k = s; k <= e; k++) r[order[k]![1]] = (s + e) / 2;
      s = e + 1;
    }
    return r;
  };
  const ra = ranks(a);
  const rb = ranks(b);
  const ma = ra.reduce((x, y) => x + y, 0) / ra.length;
  const mb = rb.reduce((x, y) => x + y, 0) / rb.length;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i]! - ma) * (rb[i]! - mb);
    da += (ra[i]! - ma) ** 2;
    db += (rb[i]! - mb) ** 2;
  }
  return num / Math.sqrt(da * db);
}

describe("the paper's mechanism on constructed data", () => {
  it('R3 (linear) ranks chains by true quality clearly better than the aggregate reward', () => {
    // G chains of true quality q_i ~ U(0,1). A = 5 answer tokens depend on the chain:
    // log p = −2 + 1.5·q_i + N(0, 0.05²). Buried among them, 195 reference tokens carry chain-independent
    // noise: log p = base_j + N(0, 0.15²). Per token the noise is small, but summed it rivals the signal.
    const G = 8;
    const A = 5;
    const noiseTokens = 195;
    const draws = 300;
    let r3Corr = 0;
    let aggregateCorr = 0;
    for (let d = 0; d < draws; d++) {
      const quality = Array.from({ length: G }, (_, i) => uniform(['mech', d, i, 'quality']));
      const answerAt = new Set(Array.from({ length: A }, (_, a) => Math.floor(uniform(['mech', d, a, 'pos']) * (A + noiseTokens))));
      const L = A + noiseTokens;
      const base = Array.from({ length: L }, (_, j) => -0.2 - 2 * uniform(['mech', d, j, 'base']));
      const lp = quality.map((q, i) =>
        Array.from({ length: L }, (_, j) => (answerAt.has(j) ? -2 + 1.5 * q + 0.05 * normal('mech', d, i, j, 'ans') : base[j]! + 0.15 * normal('mech', d, i, j, 'noise'))),
      );
      r3Corr += spearman(reasoningReflectionReward(lp, { weighting: 'linear' }).rewards, quality) / draws;
      aggregateCorr += spearman(reasoningReflectionReward(lp, { weighting: 'uniform' }).rewards, quality) / draws;
    }
    console.log(`mean Spearman correlation with true chain quality over ${draws} draws: R3 (linear) ${r3Corr.toFixed(3)}, aggregate ${aggregateCorr.toFixed(3)}`);
    expect(r3Corr).toBeGreaterThan(aggregateCorr + 0.1);
    expect(r3Corr).toBeGreaterThan(0.8);
  });
});
