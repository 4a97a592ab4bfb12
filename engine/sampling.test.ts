// The token sampler against hand-computed distributions and draws, stop handling, input checks, the
// empirical distribution over 20,000 keyed draws, and independence from call order and batch company.
import { describe, expect, it } from 'vitest';
import { uniformStream } from '../dro/random.js';
import { EngineInputError } from './errors.js';
import { checkedSamplingOptions, sampleToken, SequenceSampler, topPCuts, type SampleKey, type SamplingOptions } from './sampling.js';
import { samplingOptions as opts } from './testing/fixtures.js';

const keyOf = (sampleIndex: number, extra: Partial<SampleKey> = {}): SampleKey => ({ seed: 7, step: 3, exampleId: 'ex-a', sampleIndex, ...extra });
/** The u the sampler draws for a key and position, computed here from the documented key layout. */
const uOf = (key: SampleKey, position = 0): number => uniformStream([key.seed, key.step, key.exampleId, key.sampleIndex, 'sample'])(position);
const oneHot = (vocab: number, id: number): number[] => Array.from({ length: vocab }, (_, i) => (i === id ? 10 : 0));

// The draws at position 0 for keyOf(s), s = 0..11, used by the hand-computed cases below:
//   s=0 0.6958  s=1 0.3567  s=2 0.7606  s=3 0.04655  s=4 0.9710  s=5 0.5279
//   s=6 0.3936  s=7 0.06780  s=8 0.07622  s=9 0.4215  s=10 0.6183  s=11 0.06327
describe('the keyed draw u', () => {
  it('is uniformStream([seed, step, exampleId, sampleIndex, "sample"]) at the position', () => {
    const u = [0, 1, 3, 4, 5, 7, 9, 10].map((s) => uOf(keyOf(s)));
    const expected = [0.6958029813926326, 0.3567178069749649, 0.04654642238816897, 0.971038609982194, 0.5278724737072336, 0.06779743042203101, 0.42154632053817476, 0.6182669237273339];
    u.forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 15));
    expect(uOf(keyOf(0), 1)).toBeCloseTo(0.8462305853049696, 15);
  });
});

describe('greedy (temperature 0)', () => {
  it('picks the argmax, ties to the lowest id, with the raw log-softmax as log-prob', () => {
    // logits (1, 3, 3, 0): max 3 at ids 1 and 2 → id 1.
    // log-softmax(1) = 3 − log(e^1 + e^3 + e^3 + e^0) = −log(e^−2 + 1 + 1 + e^−3) = −log(2.18512235…) = −0.78167182…
    for (const s of [0, 1, 2, 3]) {
      const r = sampleToken([1, 3, 3, 0], keyOf(s), 0, opts({ temperature: 0 }));
      expect(r.token).toBe(1);
      expect(r.logprob).toBeCloseTo(-Math.log(2 + Math.exp(-2) + Math.exp(-3)), 14);
      expect(r.logprob).toBeCloseTo(-0.7816718231374825, 14);
    }
  });

  it('ignores top-k and top-p, and accepts typed arrays', () => {
    const r = sampleToken(new Float32Array([1, 3, 3, 0]), keyOf(0), 0, opts({ temperature: 0, topK: 1, topP: 0.1 }));
    expect(r).toEqual(sampleToken(new Float64Array([1, 3, 3, 0]), keyOf(0), 0, opts({ temperature: 0 })));
    expect(r.token).toBe(1);
    expect(r.logprob).toBeCloseTo(-0.7816718231374825, 14);
  });
});

describe('temperature and the inverse-CDF draw (in ascending id order)', () => {
  // logits (0, ln 2, ln 4): weights exp(logit / t) are (1, 2, 4) at t = 1, (1, 4, 16) at t = 0.5 and
  // (1, √2, 2) at t = 2. The CDF over ids 0, 1, 2 decides which bucket u falls into.
  const logits = [0, Math.log(2), Math.log(4)];
  const cases: { t: number; probs: number[]; draws: [number, number][] }[] = [
    // t = 1: p = (1/7, 2/7, 4/7), CDF (0.142857, 0.428571, 1).
    // s=3: u 0.04655 < 0.142857 → 0;  s=1: 0.142857 ≤ 0.3567 < 0.428571 → 1;  s=0: 0.6958 ≥ 0.428571 → 2.
    { t: 1, probs: [1 / 7, 2 / 7, 4 / 7], draws: [[3, 0], [1, 1], [0, 2]] },
    // t = 0.5: p = (1/21, 4/21, 16/21), CDF (0.047619, 0.238095, 1).
    // s=3: u 0.04655 < 0.047619 → 0;  s=7: 0.06780 → 1;  s=1: 0.3567 ≥ 0.238095 → 2 (token 1 at t = 1).
    { t: 0.5, probs: [1 / 21, 4 / 21, 16 / 21], draws: [[3, 0], [7, 1], [1, 2]] },
    // t = 2: p = (1, √2, 2) / (3 + √2) = (0.226541, 0.320377, 0.453082), CDF (0.226541, 0.546918, 1).
    // s=3: 0.04655 → 0;  s=1: 0.3567 → 1;  s=0: 0.6958 → 2;  s=5: 0.5279 < 0.546918 → 1.
    { t: 2, probs: [1 / (3 + Math.SQRT2), Math.SQRT2 / (3 + Math.SQRT2), 2 / (3 + Math.SQRT2)], draws: [[3, 0], [1, 1], [0, 2], [5, 1]] },
  ];
  for (const { t, probs, draws } of cases) {
    it(`t = ${t}: chooses the bucket u falls in, with log-prob log p(token)`, () => {
      for (const [s, token] of draws) {
        const r = sampleToken(logits, keyOf(s), 0, opts({ temperature: t }));
        expect(r.token).toBe(token);
        expect(r.logprob).toBeCloseTo(Math.log(probs[token]!), 14);
      }
    });
  }

  it('the bucket edges match the hand CDF for u computed from the key', () => {
    // Bracket each u used above by the hand-computed CDF values, so the cases above cannot pass by accident.
    expect(uOf(keyOf(3))).toBeLessThan(1 / 21);
    expect(uOf(keyOf(7))).toBeGreaterThan(1 / 21);
    expect(uOf(keyOf(7))).toBeLessThan(5 / 21);
    expect(uOf(keyOf(1))).toBeGreaterThan(1 / 7);
    expect(uOf(keyOf(1))).toBeLessThan(3 / 7);
    expect(uOf(keyOf(5))).toBeLessThan((1 + Math.SQRT2) / (3 + Math.SQRT2));
  });

  it('draws at later positions use u at that position', () => {
    // keyOf(0): u(0) = 0.6958 → token 2 at t = 1; u(1) = 0.8462 → token 2; keyOf(2): u(1) = 0.3402 → 1.
    expect(sampleToken(logits, keyOf(0), 1, opts()).token).toBe(2);
    expect(uOf(keyOf(2), 1)).toBeCloseTo(0.34023520861682055, 15);
    expect(sampleToken(logits, keyOf(2), 1, opts()).token).toBe(1);
    expect(sampleToken(logits, keyOf(2), 0, opts()).token).toBe(2); // u(0) = 0.7606
  });
});

describe('top-k', () => {
  const logits = [0.5, 2, -1, 2];
  it('k = 1 gives the greedy token with log-prob 0', () => {
    const greedy = sampleToken(logits, keyOf(0), 0, opts({ temperature: 0 })).token;
    expect(greedy).toBe(1); // ids 1 and 3 tie at 2 → id 1
    for (let s = 0; s < 12; s++) expect(sampleToken(logits, keyOf(s), 0, opts({ topK: 1 }))).toEqual({ token: greedy, logprob: 0 });
  });

  it('k = 2 keeps the two tied largest; k = 3 adds the next', () => {
    // k = 2: ids {1, 3}, q = (1/2, 1/2). s=1: u 0.3567 < 0.5 → 1; s=0: 0.6958 → 3.
    expect(sampleToken(logits, keyOf(1), 0, opts({ topK: 2 }))).toEqual({ token: 1, logprob: Math.log(0.5) });
    expect(sampleToken(logits, keyOf(0), 0, opts({ topK: 2 }))).toEqual({ token: 3, logprob: Math.log(0.5) });
    // k = 3: ids {0, 1, 3}, weights (e^−1.5, 1, 1) = (0.223130, 1, 1), total 2.223130:
    // q = (0.100368, 0.449816, 0.449816), CDF (0.100368, 0.550184, 1). s=8: u 0.07622 → 0; s=5: 0.5279 → 1.
    const total = Math.exp(-1.5) + 2;
    const r0 = sampleToken(logits, keyOf(8), 0, opts({ topK: 3 }));
    expect(r0.token).toBe(0);
    expect(r0.logprob).toBeCloseTo(Math.log(Math.exp(-1.5) / total), 14);
    expect(Math.exp(r0.logprob)).toBeCloseTo(0.1003676, 6);
    expect(sampleToken(logits, keyOf(5), 0, opts({ topK: 3 })).token).toBe(1);
    // Without top-k id 2 has weight e^−3 and the CDF is (0.0982, 0.5381, 0.5600, 1): s=8 still gives 0.
    for (let s = 0; s < 12; s++) expect(sampleToken(logits, keyOf(s), 0, opts({ topK: 3 })).token).not.toBe(2);
  });
});

describe('top-p', () => {
  // p = (0.4, 0.1, 0.3, 0.2) as logits ln p. Ranked: id 0 (0.4), id 2 (0.3), id 3 (0.2), id 1 (0.1).
  const logits = [0.4, 0.1, 0.3, 0.2].map(Math.log);

  it('p = 0.75 keeps {0, 2, 3} (cumulative 0.4, 0.7, 0.9 ≥ 0.75) and renormalises by 0.9', () => {
    // q = (0.4, 0.3, 0.2) / 0.9 = (4/9, 1/3, 2/9) for ids (0, 2, 3); id-order CDF (0.4444, 0.7778, 1).
    const o = opts({ topP: 0.75 });
    const at = (s: number): { token: number; logprob: number } => sampleToken(logits, keyOf(s), 0, o);
    expect(at(1).token).toBe(0); // u 0.3567 < 0.4444
    expect(at(1).logprob).toBeCloseTo(Math.log(4 / 9), 14);
    expect(at(9).token).toBe(0); // u 0.4215 < 0.4444 (without top-p: CDF 0.4, 0.5 → token 1)
    expect(sampleToken(logits, keyOf(9), 0, opts()).token).toBe(1);
    expect(at(0).token).toBe(2); // u 0.6958 in [0.4444, 0.7778)
    expect(at(0).logprob).toBeCloseTo(Math.log(1 / 3), 14);
    expect(at(4).token).toBe(3); // u 0.9710 ≥ 0.7778
    expect(at(4).logprob).toBeCloseTo(Math.log(2 / 9), 14);
    for (let s = 0; s < 200; s++) expect(at(s).token).not.toBe(1);
  });

  it('p = 0.7 is reached exactly by {0, 2}: q = (4/7, 3/7)', () => {
    // 0.4 + 0.3 = 0.7 in real arithmetic; the 1e-12 slack keeps rounding from adding id 3.
    const o = opts({ topP: 0.7 });
    expect(sampleToken(logits, keyOf(5), 0, o).token).toBe(0); // u 0.5279 < 4/7 = 0.5714
    expect(sampleToken(logits, keyOf(10), 0, o).token).toBe(2); // u 0.6183 ≥ 0.5714
    const r = sampleToken(logits, keyOf(4), 0, o); // u 0.9710: id 3 without the cut
    expect(r.token).toBe(2);
    expect(r.logprob).toBeCloseTo(Math.log(3 / 7), 14);
  });

  it('a p below the top probability keeps one token (log-prob 0); ties rank the lower id first', () => {
    for (const s of [0, 4, 9]) expect(sampleToken(logits, keyOf(s), 0, opts({ topP: 0.3 }))).toEqual({ token: 0, logprob: 0 });
    // Four equal tokens, p = 0.5: ranked 0, 1, 2, 3; 0.25 + 0.25 ≥ 0.5 keeps {0, 1} at 1/2 each.
    const flat = [0, 0, 0, 0];
    expect(sampleToken(flat, keyOf(1), 0, opts({ topP: 0.5 }))).toEqual({ token: 0, logprob: Math.log(0.5) }); // u 0.3567
    expect(sampleToken(flat, keyOf(4), 0, opts({ topP: 0.5 }))).toEqual({ token: 1, logprob: Math.log(0.5) }); // u 0.9710
  });

  it('applies after top-k, on the mass of the kept tokens', () => {
    // top-k 3 keeps {0, 2, 3} with q = (4/9, 3/9, 2/9); top-p 0.75 on that: 4/9 = 0.444, 7/9 = 0.778 ≥ 0.75
    // → {0, 2} with (4/7, 3/7). (On the full distribution 0.4 + 0.3 < 0.75 would also keep id 3.)
    const o = opts({ topK: 3, topP: 0.75 });
    const r = sampleToken(logits, keyOf(4), 0, o); // u 0.9710
    expect(r.token).toBe(2);
    expect(r.logprob).toBeCloseTo(Math.log(3 / 7), 14);
    const r0 = sampleToken(logits, keyOf(5), 0, o); // u 0.5279 < 4/7
    expect(r0.token).toBe(0);
    expect(r0.logprob).toBeCloseTo(Math.log(4 / 7), 14);
  });
});

// A direct sort-based reading of the documented rules, to check the sampler's selection shortcuts.
function reference(logits: number[], o: SamplingOptions, u: number): { token: number; logprob: number } {
  const max = Math.max(...logits);
  const byRank = (key: (id: number) => number) => (a: number, b: number) => key(b) - key(a) || a - b;
  let kept = logits.map((_, id) => id).filter((id) => logits[id]! > -Infinity);
  if (o.topK > 0) kept = [...kept].sort(byRank((id) => logits[id]!)).slice(0, o.topK);
  const w = (id: number): number => Math.exp((logits[id]! - max) / o.temperature);
  if (o.topP < 1) {
    const all = kept.reduce((sum, id) => sum + w(id), 0);
    const ranked = [...kept].sort(byRank(w));
    let mass = 0;
    kept = ranked.filter((id) => {
      const keep = mass < (o.topP - 1e-12) * all;
      mass += w(id);
      return keep;
    });
  }
  kept.sort((a, b) => a - b);
  const total = kept.reduce((sum, id) => sum + w(id), 0);
  let cumulative = 0;
  const token = kept.find((id) => (cumulative += w(id)) > u * total) ?? kept[kept.length - 1]!;
  return { token, logprob: (logits[token]! - max) / o.temperature - Math.log(total) };
}

describe('top-k and top-p on larger rows with many ties', () => {
  it('matches the sort-based reading for 300 random rows', () => {
    for (let r = 0; r < 300; r++) {
      const vocab = 50 + (r % 7) * 40;
      // Logits on a coarse grid (many exact ties), some masked.
      const logits = Array.from({ length: vocab }, (_, i) => {
        const x = uniformStream(['rows', r])(i);
        return x < 0.05 ? -Infinity : Math.round(x * 12) / 2;
      });
      const o = opts({ temperature: [1, 0.7, 1.6][r % 3]!, topK: [0, 1, 5, 17, 1000][r % 5]!, topP: [1, 0.9, 0.5, 0.2][r % 4]! });
      const key = keyOf(r, { exampleId: 'rows' });
      const got = sampleToken(logits, key, r, o);
      const want = reference(logits, o, uOf(key, r));
      expect(got.token).toBe(want.token);
      expect(got.logprob).toBeCloseTo(want.logprob, 12);
    }
  });
});

describe('a 49k vocabulary, as SmolLM2 has', () => {
  const V = 49152;
  /** Logits of a real-looking spread: a standard normal (keyed) times `spread`, plus `peak` on a few tokens. */
  const row = (r: number, spread: number, peak = 0): Float32Array => {
    const u = uniformStream(['big-row', r]);
    return Float32Array.from({ length: V }, (_, i) => {
      const z = Math.sqrt(-2 * Math.log(u(2 * i) || 1e-300)) * Math.cos(2 * Math.PI * u(2 * i + 1));
      return z * spread + (i % 997 === r % 997 ? peak : 0);
    });
  };
  const cases = [
    { name: 'near-uniform (a freshly initialised model)', spread: 0.05, peak: 0 },
    { name: 'spread out', spread: 1, peak: 0 },
    { name: 'peaked (a trained model)', spread: 2.5, peak: 12 },
  ];
  for (const c of cases) {
    it(`${c.name}: top-p and top-k give the tokens and log-probs of the sort-based reading, exactly`, () => {
      for (let r = 0; r < 6; r++) {
        const logits = row(r, c.spread, c.peak);
        const o = opts({ temperature: [1, 0.7, 1.3][r % 3]!, topP: [0.95, 0.9, 0.5][r % 3]!, topK: r === 5 ? 40 : 0 });
        const key = keyOf(r, { exampleId: `big-${c.spread}` });
        const got = sampleToken(logits, key, r, o);
        const want = reference(Array.from(logits), o, uOf(key, r));
        expect(got).toEqual(want);
      }
    });
  }

  it('the binned top-p cut agrees with the sorted one whenever it answers, and answers for almost every row', () => {
    let answered = 0;
    let rows = 0;
    for (const c of cases) {
      for (let r = 0; r < 20; r++) {
        const logits = row(100 + r, c.spread, c.peak);
        let max = -Infinity;
        for (const v of logits) max = Math.max(max, v);
        const weights = Float64Array.from(logits, (v) => Math.exp(v - max));
        const kept = Int32Array.from({ length: V }, (_, i) => i);
        let total = 0;
        for (const w of weights) total += w;
        for (const p of [0.95, 0.5, 0.999]) {
          const target = (p - 1e-12) * total;
          const bins = topPCuts.byBins(kept, weights, target, total);
          rows++;
          if (bins === undefined) continue;
          answered++;
          expect(bins).toEqual(topPCuts.bySort(kept, weights, target));
        }
      }
    }
    expect(answered).toBeGreaterThanOrEqual(rows - 1);
  });

  it('the binned cut defers to the sort where rounding could decide: equal weights and a share exactly at p', () => {
    const weights = new Float64Array(1000).fill(1);
    const kept = Int32Array.from({ length: 1000 }, (_, i) => i);
    expect(topPCuts.byBins(kept, weights, 500, 1000)).toBeUndefined();
    // A share within rounding of the target: the sorted cut decides, the binned one must not guess.
    const near = Float64Array.from({ length: 1000 }, (_, i) => 1 - i / 2000);
    let total = 0;
    for (const w of near) total += w;
    const sorted = [...near].sort((a, b) => b - a);
    let prefix = 0;
    for (let i = 0; i < 300; i++) prefix += sorted[i]!;
    expect(topPCuts.byBins(kept, near, prefix, total)).toBeUndefined();
    expect(topPCuts.byBins(kept, near, prefix * (1 + 1e-15), total)).toBeUndefined();
    expect(topPCuts.bySort(kept, near, prefix).m).toBe(300);
  });
});

describe('−Infinity masking', () => {
  it('masked tokens have probability 0 and never appear', () => {
    const logits = [-Infinity, 0, -Infinity, 0];
    // Kept {1, 3} at 1/2 each, CDF by id (0.5, 1): s=1 u 0.3567 → 1, s=0 u 0.6958 → 3.
    expect(sampleToken(logits, keyOf(1), 0, opts())).toEqual({ token: 1, logprob: Math.log(0.5) });
    expect(sampleToken(logits, keyOf(0), 0, opts())).toEqual({ token: 3, logprob: Math.log(0.5) });
    // top-k larger than the unmasked count keeps just the unmasked tokens.
    expect(sampleToken(logits, keyOf(0), 0, opts({ topK: 3 }))).toEqual({ token: 3, logprob: Math.log(0.5) });
    for (let s = 0; s < 500; s++) expect([1, 3]).toContain(sampleToken(logits, keyOf(s), 0, opts({ topP: 0.9 })).token);
  });

  it('greedy skips masked tokens and the log-softmax ignores them', () => {
    // (−∞, −∞, −1, −2): argmax id 2; log-softmax = −log(1 + e^−1) = −0.31326…
    const r = sampleToken([-Infinity, -Infinity, -1, -2], keyOf(0), 0, opts({ temperature: 0 }));
    expect(r.token).toBe(2);
    expect(r.logprob).toBeCloseTo(-Math.log(1 + Math.exp(-1)), 14);
  });
});

describe('bad logits', () => {
  it('NaN or +Infinity is an error naming the position and token', () => {
    const s = new SequenceSampler(keyOf(0), opts());
    s.next([0, 1, 2]);
    s.next([0, 1, 2]);
    expect(() => s.next([0, Number.NaN, 2])).toThrow('logit at position 2, token 1 is NaN');
    expect(() => sampleToken([0, 1, 2, Infinity], keyOf(0), 5, opts())).toThrow('logit at position 5, token 3 is Infinity');
    expect(() => sampleToken([Infinity, 0], keyOf(0), 0, opts({ temperature: 0 }))).toThrow('logit at position 0, token 0 is Infinity');
    expect(() => sampleToken([0, undefined as never], keyOf(0), 0, opts())).toThrow('logit at position 0, token 1 is not a number');
  });

  it('a row of only −Infinity, an empty row, or a changed vocabulary size is an error', () => {
    expect(() => sampleToken([-Infinity, -Infinity], keyOf(0), 4, opts())).toThrow('every logit at position 4 is -Infinity');
    expect(() => sampleToken([-Infinity], keyOf(0), 0, opts({ temperature: 0 }))).toThrow('every logit at position 0 is -Infinity');
    expect(() => sampleToken([], keyOf(0), 0, opts())).toThrow('logits at position 0 are empty');
    const s = new SequenceSampler(keyOf(0), opts());
    s.next([0, 1, 2]);
    expect(() => s.next([0, 1])).toThrow('logits at position 1 have 2 entries, earlier rows had 3');
  });

  it('bad keys and positions are errors', () => {
    expect(() => sampleToken([0], keyOf(0, { step: -1 }), 0, opts())).toThrow('sample key step');
    expect(() => sampleToken([0], keyOf(1.5), 0, opts())).toThrow('sample key sampleIndex');
    expect(() => sampleToken([0], keyOf(0, { exampleId: 3 as never }), 0, opts())).toThrow('sample key exampleId must be a string');
    expect(() => sampleToken([0], keyOf(0, { seed: Number.NaN }), 0, opts())).toThrow('sample key seed');
    expect(() => sampleToken([0], keyOf(0), -1, opts())).toThrow('sampling position');
    expect(() => sampleToken([0], keyOf(0), 2 ** 32, opts())).toThrow('sampling position');
    expect(() => new SequenceSampler(null as never, opts())).toThrow('sample key must be an object');
  });
});

describe('SequenceSampler endings', () => {
  const vocab = 10;
  const feed = (s: SequenceSampler, tokens: number[]): void => {
    for (const t of tokens) expect(s.next(oneHot(vocab, t)).token).toBe(t);
  };

  it('a stop token ends the sequence and is kept', () => {
    const s = new SequenceSampler(keyOf(0), opts({ temperature: 0, stopTokenIds: [7, 9] }));
    feed(s, [3]);
    expect(s.done).toBe(false);
    expect(s.result()).toMatchObject({ ids: [3], truncated: false, stopReason: null });
    feed(s, [7]);
    expect(s.done).toBe(true);
    const r = s.result();
    expect(r).toMatchObject({ ids: [3, 7], truncated: false, stopReason: 'stop-token' });
    // one-hot logits 10 vs nine zeros: log-prob −log(1 + 9e^−10)
    r.logprobs.forEach((lp) => expect(lp).toBeCloseTo(-Math.log(1 + 9 * Math.exp(-10)), 14));
    expect(() => s.next(oneHot(vocab, 1))).toThrow('the sequence has ended (stop-token)');
  });

  it('a stop sequence ends the sequence when the generated ids end with it, and is kept', () => {
    const s = new SequenceSampler(keyOf(0), opts({ temperature: 0, stopSequences: [[4, 5], [8, 8, 8]] }));
    feed(s, [4, 2, 4]);
    expect(s.done).toBe(false);
    feed(s, [5]);
    expect(s.done).toBe(true);
    expect(s.result()).toMatchObject({ ids: [4, 2, 4, 5], truncated: false, stopReason: 'stop-sequence' });
    const t = new SequenceSampler(keyOf(0), opts({ temperature: 0, stopSequences: [[8, 8, 8]] }));
    feed(t, [8, 8]);
    expect(t.done).toBe(false);
    feed(t, [8]);
    expect(t.result()).toMatchObject({ ids: [8, 8, 8], stopReason: 'stop-sequence' });
  });

  it('maxNewTokens ends the sequence as truncated, unless its last token is a stop', () => {
    const s = new SequenceSampler(keyOf(0), opts({ temperature: 0, maxNewTokens: 3, stopTokenIds: [9] }));
    feed(s, [1, 2]);
    expect(s.done).toBe(false);
    feed(s, [3]);
    expect(s.done).toBe(true);
    expect(s.result()).toMatchObject({ ids: [1, 2, 3], truncated: true, stopReason: 'max-new-tokens' });
    expect(() => s.next(oneHot(vocab, 1))).toThrow('the sequence has ended (max-new-tokens)');
    const t = new SequenceSampler(keyOf(0), opts({ temperature: 0, maxNewTokens: 2, stopTokenIds: [9] }));
    feed(t, [1, 9]);
    expect(t.result()).toMatchObject({ ids: [1, 9], truncated: false, stopReason: 'stop-token' });
  });

  it('result() returns copies', () => {
    const s = new SequenceSampler(keyOf(0), opts({ temperature: 0 }));
    feed(s, [1]);
    s.result().ids.push(99);
    expect(s.result().ids).toEqual([1]);
  });
});

describe('options', () => {
  it('has no defaults: every field is required, each missing one named; arrays are copied', () => {
    for (const field of ['temperature', 'topP', 'topK', 'maxNewTokens', 'stopTokenIds', 'stopSequences'] as const) {
      const { [field]: _, ...missing } = opts();
      expect(() => checkedSamplingOptions(missing as SamplingOptions), field).toThrow(new RegExp(`^sampling option ${field} must be .*, got undefined$`));
    }
    const stops = [[1, 2]];
    const o = checkedSamplingOptions(opts({ stopSequences: stops }));
    stops[0]!.push(3);
    expect(o.stopSequences).toEqual([[1, 2]]);
  });

  it('rejects unknown keys and out-of-range values as EngineInputError, naming the field', () => {
    const bad: [Partial<SamplingOptions>, string][] = [
      [{ top_p: 0.9 } as never, 'unknown sampling option "top_p"'],
      [{ temperature: -1 }, 'sampling option temperature must be a number in [0, ∞), got -1'],
      [{ temperature: Number.NaN }, 'sampling option temperature'],
      [{ temperature: Infinity }, 'sampling option temperature'],
      [{ topP: 0 }, 'sampling option topP must be a number in (0, 1], got 0'],
      [{ topP: 1.5 }, 'sampling option topP'],
      [{ topK: -1 }, 'sampling option topK must be an integer'],
      [{ topK: 2.5 }, 'sampling option topK'],
      [{ maxNewTokens: 0 }, 'sampling option maxNewTokens must be an integer'],
      [{ maxNewTokens: 1.5 }, 'sampling option maxNewTokens'],
      [{ temperature: '1' as never }, 'sampling option temperature'],
      [{ stopTokenIds: [-1] }, 'sampling option stopTokenIds[0] must be an integer'],
      [{ stopTokenIds: [1, 0.5] }, 'sampling option stopTokenIds[1]'],
      [{ stopTokenIds: 3 as never }, 'sampling option stopTokenIds must be an array of token ids'],
      [{ stopSequences: [[]] }, 'sampling option stopSequences[0] is empty'],
      [{ stopSequences: [[1], [2, -3]] }, 'sampling option stopSequences[1][1]'],
      [{ stopSequences: [1] as never }, 'sampling option stopSequences[0] must be an array of token ids'],
      [{ stopSequences: 'x' as never }, 'sampling option stopSequences must be an array'],
    ];
    for (const [o, message] of bad) {
      expect(() => checkedSamplingOptions(opts(o))).toThrow(message);
      expect(() => checkedSamplingOptions(opts(o))).toThrow(EngineInputError);
    }
    expect(() => checkedSamplingOptions(null as never)).toThrow('sampling options must be an object');
    expect(() => new SequenceSampler(keyOf(0), opts({ topP: 2 }))).toThrow('sampling option topP');
    expect(() => sampleToken([0], keyOf(0), 0, { ...opts(), extra: 1 } as never)).toThrow('unknown sampling option "extra"');
  });
});

describe('empirical distribution over 20,000 keyed draws', () => {
  // p = (0.1, 0.2, 0.3, 0.4); at t = 0.5 the weights are p² = (0.01, 0.04, 0.09, 0.16), total 0.30,
  // so the sharpened distribution is (1/30, 2/15, 3/10, 8/15).
  const logits = [0.1, 0.2, 0.3, 0.4].map(Math.log);
  const n = 20_000;
  const frequencies = (o: SamplingOptions): number[] => {
    const counts = [0, 0, 0, 0];
    for (let s = 0; s < n; s++) counts[sampleToken(logits, keyOf(s, { exampleId: 'stat' }), 0, o).token]!++;
    return counts.map((c) => c / n);
  };

  it('t = 1 matches p within 0.015', () => {
    frequencies(opts()).forEach((f, i) => expect(Math.abs(f - [0.1, 0.2, 0.3, 0.4][i]!)).toBeLessThan(0.015));
  });

  it('t = 0.5 matches the sharpened distribution within 0.015', () => {
    frequencies(opts({ temperature: 0.5 })).forEach((f, i) => expect(Math.abs(f - [1 / 30, 2 / 15, 3 / 10, 8 / 15][i]!)).toBeLessThan(0.015));
  });

  it('positions within one sequence are also distributed as p', () => {
    const s = new SequenceSampler(keyOf(0, { exampleId: 'stat-seq' }), opts({ maxNewTokens: n }));
    const counts = [0, 0, 0, 0];
    while (!s.done) counts[s.next(logits).token]!++;
    counts.forEach((c, i) => expect(Math.abs(c / n - [0.1, 0.2, 0.3, 0.4][i]!)).toBeLessThan(0.015));
  });
});

describe('determinism and independence of batch composition', () => {
  const vocab = 50;
  const rowAt = (position: number): number[] => Array.from({ length: vocab }, (_, i) => Math.sin(i * 0.7 + position));
  const keys: SampleKey[] = ['a', 'b', 'c'].flatMap((exampleId) => [0, 1, 2, 3].map((sampleIndex) => ({ seed: 'run-1', step: 2, exampleId, sampleIndex })));
  const o = opts({ temperature: 0.9, topK: 20, topP: 0.95 });
  const label = (k: SampleKey, position: number): string => `${k.exampleId}/${k.sampleIndex}@${position}`;

  it('sampleToken results for a key do not change with call order or interleaving with other keys', () => {
    const inOrder = new Map<string, { token: number; logprob: number }>();
    for (const k of keys) for (let p = 0; p < 8; p++) inOrder.set(label(k, p), sampleToken(rowAt(p), k, p, o));
    // Reversed, position-major, and interleaved with unrelated keys and greedy calls.
    for (let p = 7; p >= 0; p--) {
      for (const k of [...keys].reverse()) {
        sampleToken(rowAt(p + 1), { ...k, exampleId: `${k.exampleId}-other` }, p, opts());
        sampleToken(rowAt(p), k, p, opts({ temperature: 0 }));
        expect(sampleToken(rowAt(p), k, p, o)).toEqual(inOrder.get(label(k, p)));
      }
    }
  });

  it('SequenceSamplers run as a batch, alone, or in another order give the same sequences as sampleToken', () => {
    const run = (batch: SampleKey[]): Map<string, number[]> => {
      const samplers = batch.map((k) => [k, new SequenceSampler(k, opts({ ...o, maxNewTokens: 8 }))] as const);
      for (let p = 0; p < 8; p++) for (const [, s] of samplers) s.next(rowAt(p));
      return new Map(samplers.map(([k, s]) => [label(k, 0), s.result().ids]));
    };
    const batch = run(keys);
    const reversed = run([...keys].reverse());
    for (const k of keys) {
      const alone = run([k]).get(label(k, 0));
      expect(alone).toEqual(batch.get(label(k, 0)));
      expect(reversed.get(label(k, 0))).toEqual(alone);
      expect(alone).toEqual(Array.from({ length: 8 }, (_, p) => sampleToken(rowAt(p), k, p, o).token));
    }
  });

  it('a different sampleIndex, exampleId, step or seed gives different draws', () => {
    const flat = new Array<number>(1000).fill(0);
    const tokens = (k: SampleKey): number[] => Array.from({ length: 20 }, (_, p) => sampleToken(flat, k, p, opts()).token);
    const base = tokens(keyOf(0));
    expect(tokens(keyOf(0))).toEqual(base);
    for (const other of [keyOf(1), keyOf(0, { exampleId: 'ex-b' }), keyOf(0, { step: 4 }), keyOf(0, { seed: '7' })]) {
      const t = tokens(other);
      expect(t).not.toEqual(base);
      // Independent uniform draws over 1000 tokens agree at a position with chance 1/1000.
      expect(t.filter((x, i) => x === base[i]).length).toBeLessThanOrEqual(1);
    }
  });
});
