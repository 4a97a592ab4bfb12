// Hand-computed tables for one R3 data-filtering round: stage 1 (too hard), stage 2 (too easy), carry-over, validation.
import { describe, expect, it } from 'vitest';
import { DEFAULT_DATA_FILTER_OPTIONS, dataFilterRound } from './data-filter.js';
import type { DataFilterOptions, FilterCandidate, FilterDecision } from './data-filter.js';
import { chooseDeterministic } from './random.js';
import { DroInputError } from './stats.js';

/** Logprobs of the same shape as `ranks`, all equal, so σ is 0 everywhere (stage 2 is not under test). */
function flat(ranks: number[][]): number[][] {
  return ranks.map((row) => row.map(() => -1));
}

function cand(exampleId: string, ranks: number[][], logprobs: number[][] = flat(ranks)): FilterCandidate {
  return { exampleId, ranks, logprobs };
}

/** A candidate that passes stage 1 (all ranks 1) with the given chain × token logprobs. */
function easy(exampleId: string, logprobs: number[][]): FilterCandidate {
  return { exampleId, ranks: logprobs.map((row) => row.map(() => 1)), logprobs };
}

/** Two chains, one token: σ = |a − b| / 2, so score = spread / 2. */
function scored(exampleId: string, score: number): FilterCandidate {
  return easy(exampleId, [[0], [-2 * score]]);
}

const stageOnly: Partial<DataFilterOptions> = { dropShare: 0, carryShare: 0 };

function stages(decisions: FilterDecision[]): Record<string, string> {
  return Object.fromEntries(decisions.map((d) => [d.exampleId, d.stage]));
}

function expectInputError(fn: () => unknown, message: RegExp): void {
  expect(fn).toThrow(DroInputError);
  expect(fn).toThrow(message);
}

describe('defaults', () => {
  it('are the documented values and frozen', () => {
    expect(DEFAULT_DATA_FILTER_OPTIONS).toEqual({ worstTokenShare: 0.1, maxRank: 20, dropShare: 0.25, carryShare: 0.1, seed: 0, round: 0 });
    expect(Object.isFrozen(DEFAULT_DATA_FILTER_OPTIONS)).toBe(true);
  });

  it('apply when no options are given', () => {
    // ρ = 0.1, L = 10 → ⌈1⌉ = 1 worst token per chain; k = 20.
    // hard: chain worst ranks 21 and 30 → min 21 > 20 → too hard.
    // e1..e4 survive; dropShare 0.25 · 4 = 1 → drop the lowest score: e1 (σ = [0.5, 0…]) scores 0.5,
    // e2 1, e3 1.5, e4 2 (two chains, one varying token: σ = |a − b| / 2).
    // carry: round(0.1 · 5 unique) = round(0.5) = 1; pool = {o1..o4} (e2 is kept) → o2 (pinned hash choice).
    const row = (worst: number): number[] => [worst, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const lp = (spread: number): number[][] => [new Array<number>(10).fill(0), [-spread, ...new Array<number>(9).fill(0)]];
    const candidates = [
      cand('hard', [row(21), row(30)]),
      easy('e1', lp(1)),
      easy('e2', lp(2)),
      easy('e3', lp(3)),
      easy('e4', lp(4)),
    ];
    const result = dataFilterRound(candidates, ['e2', 'o1', 'o2', 'o3', 'o4', 'o1']);
    expect(result.subset).toEqual(['e2', 'e3', 'e4', 'o2']);
    expect(result.decisions).toEqual([
      { exampleId: 'hard', kept: false, stage: 'too-hard', hardness: 21, score: null },
      { exampleId: 'e1', kept: false, stage: 'too-easy', hardness: 1, score: 0.5 },
      { exampleId: 'e2', kept: true, stage: 'kept', hardness: 1, score: 1 },
      { exampleId: 'e3', kept: true, stage: 'kept', hardness: 1, score: 1.5 },
      { exampleId: 'e4', kept: true, stage: 'kept', hardness: 1, score: 2 },
      { exampleId: 'o2', kept: true, stage: 'carried-over', hardness: null, score: null },
    ]);
    expect([result.droppedTooHard, result.droppedTooEasy, result.carriedOver]).toEqual([1, 1, 1]);
  });
});

describe('stage 1: too hard', () => {
  const table: { name: string; ranks: number[][]; options: Partial<DataFilterOptions>; hardness: number; stage: 'too-hard' | 'kept' }[] = [
    {
      // ρ·L = 0.5·4 = 2 worst: chain 0 {40, 30} → 35; chain 1 {25, 22} → 23.5; min 23.5 > 20.
      name: '⌈ρ·L⌉ = 2, every chain above k',
      ranks: [
        [1, 30, 2, 40],
        [25, 1, 22, 3],
      ],
      options: { worstTokenShare: 0.5 },
      hardness: 23.5,
      stage: 'too-hard',
    },
    {
      // chain 0 {60, 50} → 55; chain 1 {4, 3} → 3.5; one good chain saves it: min 3.5 ≤ 20.
      name: 'one chain good enough saves the prompt',
      ranks: [
        [50, 60, 1, 1],
        [1, 2, 3, 4],
      ],
      options: { worstTokenShare: 0.5 },
      hardness: 3.5,
      stage: 'kept',
    },
    {
      // ⌈0.1·5⌉ = ⌈0.5⌉ = 1 worst: chain 0 → 21, chain 1 → 22; min 21 > 20.
      name: '⌈ρ·L⌉ = 1 takes the single worst rank',
      ranks: [
        [21, 1, 1, 1, 1],
        [1, 1, 22, 1, 1],
      ],
      options: { worstTokenShare: 0.1 },
      hardness: 21,
      stage: 'too-hard',
    },
    {
      // {30, 10} → 20, exactly k: not strictly above, so not too hard.
      name: 'mean exactly k is not too hard',
      ranks: [[10, 30, 1, 1]],
      options: { worstTokenShare: 0.5 },
      hardness: 20,
      stage: 'kept',
    },
    {
      // {31, 10} → 20.5 > 20.
      name: 'just above k is too hard',
      ranks: [[10, 31, 1, 1]],
      options: { worstTokenShare: 0.5 },
      hardness: 20.5,
      stage: 'too-hard',
    },
    {
      // ρ = 1: all tokens, (1 + 2 + 3) / 3 = 2; k = 1.5 → 2 > 1.5.
      name: 'ρ = 1 averages the whole row',
      ranks: [[1, 2, 3]],
      options: { worstTokenShare: 1, maxRank: 1.5 },
      hardness: 2,
      stage: 'too-hard',
    },
    {
      // ρ·L = 1e-12·3 → ⌈…⌉ would be 1 anyway, but snapping makes it 0: at least 1 token → 9.
      name: 'a tiny ρ still takes one token',
      ranks: [[5, 9, 2]],
      options: { worstTokenShare: 1e-12 },
      hardness: 9,
      stage: 'kept',
    },
    {
      // 0.07·100 = 7.000000000000001 in floats; the intended ⌈7⌉ = 7 worst of 1..100: (100 + … + 94) / 7 = 97.
      // (A raw ceil would give 8 tokens and (100 + … + 93) / 8 = 96.5.)
      name: 'ρ·L with float noise is taken as the intended integer',
      ranks: [Array.from({ length: 100 }, (_, j) => j + 1)],
      options: { worstTokenShare: 0.07, maxRank: 96.75 },
      hardness: 97,
      stage: 'too-hard',
    },
    {
      // L = 1: ⌈0.1·1⌉ = 1; chains 3 and 25 → min 3.
      name: 'single token',
      ranks: [[3], [25]],
      options: { worstTokenShare: 0.1 },
      hardness: 3,
      stage: 'kept',
    },
    {
      // N = 1, ⌈0.25·8⌉ = 2 worst {40, 22} → 31 > 20.
      name: 'single chain',
      ranks: [[1, 40, 1, 22, 1, 1, 1, 1]],
      options: { worstTokenShare: 0.25 },
      hardness: 31,
      stage: 'too-hard',
    },
  ];

  it.each(table)('$name', ({ ranks, options, hardness, stage }) => {
    const result = dataFilterRound([cand('x', ranks)], [], { ...stageOnly, ...options });
    expect(result.decisions).toHaveLength(1);
    const d = result.decisions[0]!;
    expect(d.hardness).toBe(hardness);
    expect(d.stage).toBe(stage);
    expect(d.kept).toBe(stage === 'kept');
    // Stage 2 runs only on survivors; flat logprobs → σ = 0.
    expect(d.score).toBe(stage === 'kept' ? 0 : null);
    expect(result.droppedTooHard).toBe(stage === 'too-hard' ? 1 : 0);
    expect(result.subset).toEqual(stage === 'kept' ? ['x'] : []);
  });
});

describe('stage 2: too easy', () => {
  // Two chains: σ_j = |a − b| / 2.
  //   s1 [[-1, -2], [-3, -2]] → σ = [1, 0]   → score 1
  //   s2 [[0, -4], [0, -1]]   → σ = [0, 1.5] → 1.5
  //   s3 [[-1, -1], [-1, -1]] → σ = [0, 0]   → 0
  //   s4 [[-2, -6], [-2, -1]] → σ = [0, 2.5] → 2.5
  // Three chains: t1 [[-1], [-2], [-3]] → mean −2, Σ(dev²) = 2, σ = √(2/3) ≈ 0.8165.
  const pool = (): FilterCandidate[] => [
    easy('s1', [
      [-1, -2],
      [-3, -2],
    ]),
    easy('s2', [
      [0, -4],
      [0, -1],
    ]),
    easy('s3', [
      [-1, -1],
      [-1, -1],
    ]),
    easy('s4', [
      [-2, -6],
      [-2, -1],
    ]),
    easy('t1', [[-1], [-2], [-3]]),
    cand('h', [[50], [60]]), // too hard: min(50, 60) = 50 > 20, not a survivor
  ];

  it('scores survivors with max_j σ_j and leaves too-hard prompts unscored', () => {
    const result = dataFilterRound(pool(), [], stageOnly);
    const score = Object.fromEntries(result.decisions.map((d) => [d.exampleId, d.score]));
    expect(score).toEqual({ s1: 1, s2: 1.5, s3: 0, s4: 2.5, t1: expect.closeTo(Math.sqrt(2 / 3), 12) as number, h: null });
  });

  // 5 survivors (h is not one). Ascending scores: s3 0, t1 0.8165, s1 1, s2 1.5, s4 2.5.
  const table: { dropShare: number; dropped: string[]; why: string }[] = [
    { dropShare: 0, dropped: [], why: 'floor(0 · 5) = 0' },
    { dropShare: 0.19, dropped: [], why: 'floor(0.95) = 0' },
    { dropShare: 0.2, dropped: ['s3'], why: 'floor(1) = 1' },
    { dropShare: 0.25, dropped: ['s3'], why: 'floor(1.25) = 1' },
    { dropShare: 0.5, dropped: ['s3', 't1'], why: 'floor(2.5) = 2' },
    { dropShare: 0.99, dropped: ['s3', 't1', 's1', 's2'], why: 'floor(4.95) = 4' },
  ];

  it.each(table)('dropShare $dropShare drops the lowest scores: $why', ({ dropShare, dropped }) => {
    const result = dataFilterRound(pool(), [], { dropShare, carryShare: 0 });
    const expected: Record<string, string> = { s1: 'kept', s2: 'kept', s3: 'kept', s4: 'kept', t1: 'kept', h: 'too-hard' };
    for (const id of dropped) expected[id] = 'too-easy';
    expect(stages(result.decisions)).toEqual(expected);
    expect(result.droppedTooEasy).toBe(dropped.length);
    expect(result.droppedTooHard).toBe(1);
    // Kept candidates in candidate order.
    expect(result.subset).toEqual(['s1', 's2', 's3', 's4', 't1'].filter((id) => !dropped.includes(id)));
  });

  it('breaks score ties by ascending exampleId (code-unit order)', () => {
    // All scores 1; 4 survivors · 0.5 = 2 dropped: the two smallest ids.
    // Code-unit order: 'B' (66) < 'a' (97), and 'ex-10' < 'ex-9' ('1' < '9').
    const ids = ['ex-9', 'a', 'ex-10', 'B'];
    const result = dataFilterRound(
      ids.map((id) => scored(id, 1)),
      [],
      { dropShare: 0.5, carryShare: 0 },
    );
    expect(stages(result.decisions)).toEqual({ B: 'too-easy', a: 'too-easy', 'ex-10': 'kept', 'ex-9': 'kept' });
    expect(result.subset).toEqual(['ex-9', 'ex-10']);
  });

  it('with all scores equal drops by exampleId alone, and 3 · 0.5 floors to 1', () => {
    const result = dataFilterRound([scored('b', 2), scored('a', 2), scored('c', 2)], [], { dropShare: 0.5, carryShare: 0 });
    expect(stages(result.decisions)).toEqual({ a: 'too-easy', b: 'kept', c: 'kept' });
    expect(result.subset).toEqual(['b', 'c']);
  });

  it('single chain: σ is 0 everywhere, so every score is 0 and ties decide', () => {
    // N = 1: population std of one value is 0.
    const result = dataFilterRound([easy('y', [[-5, -0.1]]), easy('x', [[-9, -3]])], [], { dropShare: 0.5, carryShare: 0 });
    expect(result.decisions.map((d) => d.score)).toEqual([0, 0]);
    expect(stages(result.decisions)).toEqual({ x: 'too-easy', y: 'kept' });
  });

  it('single token: score is that token’s σ', () => {
    // [[-1], [-4]] → σ = 1.5; [[-1], [-2]] → 0.5; 2 · 0.5 = 1 dropped → lo.
    const result = dataFilterRound([easy('hi', [[-1], [-4]]), easy('lo', [[-1], [-2]])], [], { dropShare: 0.5, carryShare: 0 });
    expect(result.decisions).toEqual([
      { exampleId: 'hi', kept: true, stage: 'kept', hardness: 1, score: 1.5 },
      { exampleId: 'lo', kept: false, stage: 'too-easy', hardness: 1, score: 0.5 },
    ]);
  });

  it('dropShare · survivors with float noise is taken as the intended integer', () => {
    // 0.7 · 90 = 62.99999999999999 in floats; the intended floor(63) = 63 → c00..c62 dropped (scores 0..62).
    const candidates = Array.from({ length: 90 }, (_, i) => scored(`c${String(i).padStart(2, '0')}`, i));
    const result = dataFilterRound(candidates, [], { dropShare: 0.7, carryShare: 0 });
    expect(result.droppedTooEasy).toBe(63);
    expect(result.subset).toEqual(candidates.slice(63).map((c) => c.exampleId));
  });

  it('what is dropped does not depend on candidate order; output order follows the input', () => {
    const forward = dataFilterRound(pool(), ['s3', 'old'], { dropShare: 0.5, carryShare: 0.5 });
    const reversed = dataFilterRound([...pool()].reverse(), ['old', 's3'], { dropShare: 0.5, carryShare: 0.5 });
    expect(stages(reversed.decisions)).toEqual(stages(forward.decisions));
    expect(reversed.decisions.map((d) => d.exampleId)).toEqual(['h', 't1', 's4', 's3', 's2', 's1', ...forward.decisions.slice(6).map((d) => d.exampleId)]);
    expect(new Set(reversed.subset)).toEqual(new Set(forward.subset));
  });
});

describe('carry-over', () => {
  const key = (seed: number | string, round: number): (string | number)[] => [seed, 'data-filter-carry-over', round];

  const countTable: { carryShare: number; previous: string[]; count: number; why: string }[] = [
    { carryShare: 0.5, previous: ['a', 'b', 'c', 'd', 'e'], count: 3, why: 'round(2.5) = 3' },
    { carryShare: 0.1, previous: ['a', 'b', 'c', 'd', 'e'], count: 1, why: 'round(0.5) = 1' },
    { carryShare: 0.09, previous: ['a', 'b', 'c', 'd', 'e'], count: 0, why: 'round(0.45) = 0' },
    { carryShare: 0.5, previous: ['a', 'a', 'b', 'c', 'd', 'd'], count: 2, why: 'unique ids: round(0.5 · 4) = 2' },
    { carryShare: 1, previous: ['a', 'b', 'c'], count: 3, why: 'round(3) = 3' },
    { carryShare: 0, previous: ['a', 'b', 'c'], count: 0, why: 'round(0) = 0' },
    { carryShare: 0.5, previous: [], count: 0, why: 'empty previous set' },
  ];

  it.each(countTable)('carryShare $carryShare of $previous.length ids: $why', ({ carryShare, previous, count }) => {
    const result = dataFilterRound([], previous, { carryShare });
    expect(result.carriedOver).toBe(count);
    expect(result.subset).toEqual(chooseDeterministic(previous, count, key(0, 0)));
    // Not candidates: one appended decision each, no stage-1/2 values.
    expect(result.decisions).toEqual(result.subset.map((exampleId) => ({ exampleId, kept: true, stage: 'carried-over', hardness: null, score: null })));
    expect([result.droppedTooHard, result.droppedTooEasy]).toEqual([0, 0]);
  });

  it('carryShare · |previous| with float noise is rounded as intended', () => {
    // 0.35 · 90 = 31.499999999999996 in floats; the intended round(31.5) = 32.
    const previous = Array.from({ length: 90 }, (_, i) => `p${i}`);
    expect(dataFilterRound([], previous, { carryShare: 0.35 }).carriedOver).toBe(32);
  });

  // Pinned choices of 2 of p1..p6 (from random.ts's counter-based hash; verified against chooseDeterministic).
  const six = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
  const choiceTable: { seed: number | string; round: number; chosen: string[] }[] = [
    { seed: 0, round: 0, chosen: ['p6', 'p3'] },
    { seed: 0, round: 1, chosen: ['p3', 'p2'] },
    { seed: 1, round: 0, chosen: ['p6', 'p5'] },
    { seed: 'alt', round: 0, chosen: ['p1', 'p4'] },
  ];

  it.each(choiceTable)('seed $seed, round $round carries $chosen', ({ seed, round, chosen }) => {
    // round(1/3 · 6) = 2.
    const result = dataFilterRound([], six, { carryShare: 1 / 3, seed, round });
    expect(result.subset).toEqual(chosen);
    expect(result.subset).toEqual(chooseDeterministic(six, 2, key(seed, round)));
  });

  it('is deterministic, and a different seed or round changes the choice', () => {
    const a = dataFilterRound([], six, { carryShare: 1 / 3, seed: 0, round: 0 });
    const b = dataFilterRound([], six, { carryShare: 1 / 3, seed: 0, round: 0 });
    expect(b).toEqual(a);
    expect(dataFilterRound([], six, { carryShare: 1 / 3, seed: 0, round: 1 }).subset).not.toEqual(a.subset);
    expect(dataFilterRound([], six, { carryShare: 1 / 3, seed: 1, round: 0 }).subset).not.toEqual(a.subset);
    // A string seed is a different key from the number with the same digits.
    expect(dataFilterRound([], six, { carryShare: 1 / 3, seed: '0', round: 0 }).subset).toEqual(chooseDeterministic(six, 2, key('0', 0)));
  });

  it('does not depend on the order of the previous training set', () => {
    const forward = dataFilterRound([], six, { carryShare: 0.5, seed: 7, round: 3 });
    const shuffled = dataFilterRound([], ['p4', 'p1', 'p6', 'p3', 'p5', 'p2', 'p4'], { carryShare: 0.5, seed: 7, round: 3 });
    expect(forward.carriedOver).toBe(3);
    expect(shuffled).toEqual(forward);
  });

  it('rescues dropped candidates, keeping their stage-1/2 values, and counts them as carried, not dropped', () => {
    // hard: min(50, 60) = 50 > 20 → too hard. lo (σ 0.5) and hi (σ 1.5) survive; floor(0.5 · 2) = 1 drops lo.
    // Previous {hard, lo}; carryShare 1 → round(1 · 2) = 2; neither is kept → pool {hard, lo} → both carried.
    const candidates = [cand('hard', [[50], [60]]), scored('lo', 0.5), scored('hi', 1.5)];
    const result = dataFilterRound(candidates, ['lo', 'hard'], { dropShare: 0.5, carryShare: 1 });
    const carried = chooseDeterministic(['lo', 'hard'], 2, key(0, 0));
    expect(result.subset).toEqual(['hi', ...carried]);
    expect(result.decisions).toEqual([
      { exampleId: 'hard', kept: true, stage: 'carried-over', hardness: 50, score: null },
      { exampleId: 'lo', kept: true, stage: 'carried-over', hardness: 1, score: 0.5 },
      { exampleId: 'hi', kept: true, stage: 'kept', hardness: 1, score: 1.5 },
    ]);
    expect([result.droppedTooHard, result.droppedTooEasy, result.carriedOver]).toEqual([0, 0, 2]);
  });

  it('never carries an id that is already kept, and takes the whole pool when it is smaller than the count', () => {
    // Previous {k1, x}; carryShare 1 → count 2; k1 is kept this round → pool {x} → only x is carried.
    const result = dataFilterRound([scored('k1', 1)], ['k1', 'x'], { dropShare: 0, carryShare: 1 });
    expect(result.subset).toEqual(['k1', 'x']);
    expect(result.carriedOver).toBe(1);
    expect(result.decisions).toEqual([
      { exampleId: 'k1', kept: true, stage: 'kept', hardness: 1, score: 1 },
      { exampleId: 'x', kept: true, stage: 'carried-over', hardness: null, score: null },
    ]);
  });

  it('appends non-candidate carry-overs after the candidates in chosen order', () => {
    // 1 candidate kept; previous {a, b, c, d, e}, carryShare 0.5 → round(2.5) = 3 of the 5 (none kept).
    const previous = ['a', 'b', 'c', 'd', 'e'];
    const result = dataFilterRound([scored('z', 1)], previous, { dropShare: 0, carryShare: 0.5 });
    const chosen = chooseDeterministic(previous, 3, key(0, 0));
    expect(chosen).toEqual(['b', 'a', 'e']);
    expect(result.subset).toEqual(['z', ...chosen]);
    expect(result.decisions.map((d) => d.exampleId)).toEqual(['z', ...chosen]);
    expect(result.decisions.slice(1).every((d) => d.stage === 'carried-over' && d.kept && d.hardness === null && d.score === null)).toBe(true);
  });
});

describe('edge cases', () => {
  it('empty candidates and empty previous set give an empty round', () => {
    expect(dataFilterRound([], [])).toEqual({ subset: [], decisions: [], droppedTooHard: 0, droppedTooEasy: 0, carriedOver: 0 });
  });

  it('dropShare 0 keeps every stage-1 survivor', () => {
    const result = dataFilterRound([scored('a', 0), scored('b', 0), scored('c', 3)], [], { dropShare: 0, carryShare: 0 });
    expect(result.subset).toEqual(['a', 'b', 'c']);
    expect(result.droppedTooEasy).toBe(0);
  });

  it('does not mutate its inputs', () => {
    const candidates: FilterCandidate[] = [
      cand('hard', [
        [40, 30],
        [25, 50],
      ]),
      easy('a', [
        [-3, -1],
        [-1, -2],
      ]),
      easy('b', [
        [-1, -1],
        [-2, -1],
      ]),
    ];
    const previous = ['hard', 'q', 'b', 'q'];
    const options: Partial<DataFilterOptions> = { dropShare: 0.5, carryShare: 1, seed: 'm' };
    const before = structuredClone({ candidates, previous, options });
    const deepFreeze = <T>(x: T): T => {
      if (typeof x === 'object' && x !== null) {
        for (const v of Object.values(x)) deepFreeze(v);
        Object.freeze(x);
      }
      return x;
    };
    // Frozen inputs make any write throw (ESM is strict mode).
    const result = dataFilterRound(deepFreeze(candidates), deepFreeze(previous), deepFreeze(options));
    expect({ candidates, previous, options }).toEqual(before);
    expect(result.subset).toContain('a');
  });
});

describe('validation', () => {
  const good = (): FilterCandidate => cand('ex-3', [[1, 2]], [[-1, -2]]);
  const run = (candidates: unknown[], previous: unknown = [], options: unknown = {}) => () =>
    dataFilterRound(candidates as FilterCandidate[], previous as string[], options as Partial<DataFilterOptions>);

  const optionTable: { options: unknown; message: RegExp }[] = [
    { options: { foo: 1 }, message: /unknown data filter option "foo"/ },
    { options: null, message: /data filter options must be an object/ },
    { options: { worstTokenShare: 0 }, message: /worstTokenShare must be a number in \(0, 1\], got 0/ },
    { options: { worstTokenShare: 1.5 }, message: /worstTokenShare/ },
    { options: { worstTokenShare: Number.NaN }, message: /worstTokenShare/ },
    { options: { maxRank: 0 }, message: /maxRank must be a number in \(0, ∞\)/ },
    { options: { maxRank: Infinity }, message: /maxRank/ },
    { options: { dropShare: 1 }, message: /dropShare must be a number in \[0, 1\), got 1/ },
    { options: { dropShare: -0.1 }, message: /dropShare/ },
    { options: { carryShare: 1.01 }, message: /carryShare must be a number in \[0, 1\]/ },
    { options: { carryShare: '0.5' }, message: /carryShare/ },
    { options: { round: 1.5 }, message: /round must be an integer in \[0, ∞\)/ },
    { options: { round: -1 }, message: /round/ },
    { options: { seed: Number.NaN }, message: /seed must be a string or a finite number, got null/ },
    { options: { seed: undefined }, message: /seed must be a string or a finite number, got undefined/ },
    { options: { seed: {} }, message: /seed must be a string or a finite number, got \{\}/ },
  ];

  it.each(optionTable)('rejects options $options', ({ options, message }) => {
    expectInputError(run([good()], [], options), message);
  });

  const inputTable: { name: string; candidates: unknown[]; previous?: unknown; message: RegExp }[] = [
    { name: 'candidate not an object', candidates: [good(), null], message: /candidates\[1\] is not an object/ },
    { name: 'empty exampleId', candidates: [good(), { ...good(), exampleId: '' }], message: /candidates\[1\]\.exampleId must be a non-empty string, got ""/ },
    { name: 'non-string exampleId', candidates: [{ ...good(), exampleId: 7 }], message: /candidates\[0\]\.exampleId must be a non-empty string, got 7/ },
    { name: 'missing exampleId', candidates: [{ ranks: [[1]], logprobs: [[0]] }], message: /candidates\[0\]\.exampleId .* got undefined/ },
    { name: 'duplicate exampleId', candidates: [good(), cand('b', [[1]]), good()], message: /duplicate exampleId "ex-3" \(candidates\[0\] and candidates\[2\]\)/ },
    { name: 'ranks with no rows', candidates: [cand('ex-3', [], [])], message: /candidate "ex-3" ranks has no rows/ },
    { name: 'ranks not an array', candidates: [{ ...good(), ranks: 'x' }], message: /candidate "ex-3" ranks has no rows/ },
    { name: 'ranks with no columns', candidates: [cand('ex-3', [[], []])], message: /candidate "ex-3" ranks has no columns/ },
    { name: 'ragged ranks', candidates: [cand('ex-3', [[1, 2], [1]], [[0, 0], [0]])], message: /candidate "ex-3" ranks is ragged/ },
    { name: 'NaN rank', candidates: [cand('ex-3', [[1, Number.NaN]], [[0, 0]])], message: /candidate "ex-3" ranks\[0\]\[1\] is not a finite number/ },
    { name: 'rank 0', candidates: [cand('ex-3', [[1, 2], [0, 1]], [[0, 0], [0, 0]])], message: /candidate "ex-3" ranks\[1\]\[0\] must be an integer >= 1, got 0/ },
    { name: 'fractional rank', candidates: [cand('ex-3', [[1.5]], [[0]])], message: /candidate "ex-3" ranks\[0\]\[0\] must be an integer >= 1, got 1\.5/ },
    { name: 'negative rank', candidates: [cand('ex-3', [[-2]], [[0]])], message: /candidate "ex-3" ranks\[0\]\[0\] must be an integer >= 1/ },
    { name: 'logprobs with no rows', candidates: [cand('ex-3', [[1]], [])], message: /candidate "ex-3" logprobs has no rows/ },
    { name: 'infinite logprob', candidates: [cand('ex-3', [[1, 1]], [[0, -Infinity]])], message: /candidate "ex-3" logprobs\[0\]\[1\] is not a finite number/ },
    { name: 'NaN logprob', candidates: [cand('ex-3', [[1]], [[Number.NaN]])], message: /candidate "ex-3" logprobs\[0\]\[0\] is not a finite number/ },
    { name: 'different row counts', candidates: [cand('ex-3', [[1, 2], [1, 2]], [[0, 0]])], message: /candidate "ex-3" ranks is 2×2 but logprobs is 1×2/ },
    { name: 'different column counts', candidates: [cand('ex-3', [[1, 2, 3]], [[0, 0]])], message: /candidate "ex-3" ranks is 1×3 but logprobs is 1×2/ },
    { name: 'candidates not an array', candidates: 'nope' as unknown as unknown[], message: /candidates must be an array/ },
    { name: 'previous not an array', candidates: [good()], previous: 'a', message: /previousTrainingSet must be an array/ },
    { name: 'empty previous id', candidates: [good()], previous: ['a', ''], message: /previousTrainingSet\[1\] must be a non-empty exampleId string, got ""/ },
    { name: 'non-string previous id', candidates: [good()], previous: [3], message: /previousTrainingSet\[0\] must be a non-empty exampleId string, got 3/ },
    { name: 'undefined previous id', candidates: [good()], previous: ['a', undefined], message: /previousTrainingSet\[1\] .* got undefined/ },
  ];

  it.each(inputTable)('rejects $name', ({ candidates, previous, message }) => {
    expectInputError(run(candidates, previous ?? []), message);
  });

  it('validates even prompts that stage 1 would drop, and before choosing anything', () => {
    // The bad candidate comes after a valid too-hard one; nothing is returned half-done.
    expectInputError(run([cand('h', [[99]]), cand('ex-4', [[1]], [[Number.POSITIVE_INFINITY]])]), /candidate "ex-4" logprobs/);
  });
});
