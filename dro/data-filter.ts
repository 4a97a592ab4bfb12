// One round of DRO's R3-based dynamic data filtering (arXiv 2506.13351): drop prompts too hard for every chain, then the
// share least sensitive to reasoning (lowest max_j σ_j), then carry part of the previous set over. Open choices made here:
// strict "> k", a fixed drop share with exampleId tie-break, a seeded carry-over, share products snapped (0.07·100 = 7).
import { chooseDeterministic } from './random.js';
import { tokenStd } from './r3.js';
import { assertFiniteMatrix, assertKnownKeys, assertNumberIn, DroInputError, mean } from './stats.js';

export interface FilterCandidate {
  exampleId: string;
  /** ranks[n][j]: rank of reference token j in the model's distribution after chain n (1 = top choice). N rows × L columns, integers >= 1. */
  ranks: number[][];
  /** logprobs[n][j]: log-prob of reference token j after chain n. Same shape as ranks. */
  logprobs: number[][];
}

export interface DataFilterOptions {
  /** ρ: share of the worst-ranked reference tokens averaged per chain in stage 1. Default 0.1, in (0, 1]. */
  worstTokenShare: number;
  /** k: a prompt is too hard when every chain's mean worst-token rank is above this. Default 20, > 0. */
  maxRank: number;
  /** Share of stage-1 survivors with the lowest max_j σ_j dropped in stage 2. Default 0.25, in [0, 1). */
  dropShare: number;
  /** Share of the previous training set carried into the new one. Default 0.1, in [0, 1]. */
  carryShare: number;
  /** Seed for the deterministic carry-over choice (number or string). Default 0. */
  seed: number | string;
  /** Filtering round number, part of the carry-over random key. Default 0, integer >= 0. */
  round: number;
}

export const DEFAULT_DATA_FILTER_OPTIONS: Readonly<DataFilterOptions> = Object.freeze({
  worstTokenShare: 0.1,
  maxRank: 20,
  dropShare: 0.25,
  carryShare: 0.1,
  seed: 0,
  round: 0,
});

export type FilterStage = 'too-hard' | 'too-easy' | 'kept' | 'carried-over';

export interface FilterDecision {
  exampleId: string;
  /** True for 'kept' and 'carried-over'. */
  kept: boolean;
  /** Dropped at stage 1 ('too-hard'), dropped at stage 2 ('too-easy'), kept, or carried over from the previous set. */
  stage: FilterStage;
  /** Min over chains of the mean of that chain's worst ⌈ρ·L⌉ ranks (null for carried-over ids that were not candidates). */
  hardness: number | null;
  /** Stage-2 score max_j σ_j (null for too-hard prompts and carried-over non-candidates). */
  score: number | null;
}

export interface DataFilterResult {
  /** Kept candidates in candidate order, then carried-over ids in their chosen order. */
  subset: string[];
  /** One per candidate in candidate order, then one per carried-over id that was not a candidate. */
  decisions: FilterDecision[];
  /** Candidates whose final stage is 'too-hard' (a rescued candidate counts as carried over, not dropped). */
  droppedTooHard: number;
  /** Candidates whose final stage is 'too-easy'. */
  droppedTooEasy: number;
  carriedOver: number;
}

const CARRY_OVER_PURPOSE = 'data-filter-carry-over';

/**
 * share × count lands a hair off the intended integer or half (0.07·100 = 7.000000000000001, 0.7·90 = 62.99…),
 * which would move ceil/floor/round by a whole item; real products are never that close to a half by intent.
 */
function snapToHalf(x: number): number {
  const nearest = Math.round(x * 2) / 2;
  return Math.abs(x - nearest) <= 1e-9 * Math.max(1, Math.abs(x)) ? nearest : x;
}

function resolveOptions(options: Partial<DataFilterOptions>): DataFilterOptions {
  if (typeof options !== 'object' || options === null) throw new DroInputError('data filter options must be an object');
  assertKnownKeys(options, Object.keys(DEFAULT_DATA_FILTER_OPTIONS), 'data filter');
  const o: DataFilterOptions = { ...DEFAULT_DATA_FILTER_OPTIONS, ...options };
  assertNumberIn(o.worstTokenShare, 'data filter option worstTokenShare', 0, 1, { minExclusive: true });
  assertNumberIn(o.maxRank, 'data filter option maxRank', 0, Infinity, { minExclusive: true });
  // dropShare 1 would empty every round.
  assertNumberIn(o.dropShare, 'data filter option dropShare', 0, 1, { maxExclusive: true });
  assertNumberIn(o.carryShare, 'data filter option carryShare', 0, 1);
  assertNumberIn(o.round, 'data filter option round', 0, Infinity, { integer: true });
  const seedOk = typeof o.seed === 'string' || (typeof o.seed === 'number' && Number.isFinite(o.seed));
  if (!seedOk) throw new DroInputError(`data filter option seed must be a string or a finite number, got ${JSON.stringify(o.seed) ?? String(o.seed)}`);
  return o;
}

function validateCandidate(candidate: FilterCandidate, index: number): void {
  if (typeof candidate !== 'object' || candidate === null) throw new DroInputError(`candidates[${index}] is not an object`);
  const id: unknown = candidate.exampleId;
  if (typeof id !== 'string' || id === '') throw new DroInputError(`candidates[${index}].exampleId must be a non-empty string, got ${JSON.stringify(id) ?? String(id)}`);
  const [n, l] = assertFiniteMatrix(candidate.ranks, `candidate "${id}" ranks`);
  const [nl, ll] = assertFiniteMatrix(candidate.logprobs, `candidate "${id}" logprobs`);
  if (n !== nl || l !== ll) throw new DroInputError(`candidate "${id}" ranks is ${n}×${l} but logprobs is ${nl}×${ll}`);
  candidate.ranks.forEach((row, i) =>
    row.forEach((r, j) => {
      if (!Number.isInteger(r) || r < 1) throw new DroInputError(`candidate "${id}" ranks[${i}][${j}] must be an integer >= 1, got ${r}`);
    }),
  );
}

/** Stage-1 value: the best chain's mean over its worst ⌈ρ·L⌉ ranks. */
function hardnessOf(ranks: readonly (readonly number[])[], worstTokenShare: number): number {
  const L = ranks[0]!.length;
  // max(1, …): a tiny ρ still looks at the single worst token.
  const worst = Math.max(1, Math.ceil(snapToHalf(worstTokenShare * L)));
  let best = Infinity;
  for (const row of ranks) best = Math.min(best, mean([...row].sort((a, b) => b - a).slice(0, worst)));
  return best;
}

/** Stage-2 score: how strongly the reference reacts to the reasoning at its most reasoning-sensitive token. */
function scoreOf(logprobs: readonly (readonly number[])[]): number {
  // reduce, not Math.max(...σ): long references would overflow the argument list.
  return tokenStd(logprobs).reduce((a, b) => Math.max(a, b), -Infinity);
}

export function dataFilterRound(
  candidates: readonly FilterCandidate[],
  previousTrainingSet: readonly string[],
  options: Partial<DataFilterOptions> = {},
): DataFilterResult {
  const o = resolveOptions(options);
  // Checked through unknown copies: Array.isArray would narrow a readonly array to any[].
  const rawCandidates: unknown = candidates;
  const rawPrevious: unknown = previousTrainingSet;
  if (!Array.isArray(rawCandidates)) throw new DroInputError('candidates must be an array');
  if (!Array.isArray(rawPrevious)) throw new DroInputError('previousTrainingSet must be an array of exampleIds');
  const seen = new Map<string, number>();
  candidates.forEach((c, i) => {
    validateCandidate(c, i);
    const first = seen.get(c.exampleId);
    if (first !== undefined) throw new DroInputError(`duplicate exampleId "${c.exampleId}" (candidates[${first}] and candidates[${i}])`);
    seen.set(c.exampleId, i);
  });
  previousTrainingSet.forEach((id: unknown, i) => {
    if (typeof id !== 'string' || id === '') throw new DroInputError(`previousTrainingSet[${i}] must be a non-empty exampleId string, got ${JSON.stringify(id) ?? String(id)}`);
  });

  const decisions: FilterDecision[] = candidates.map((c) => {
    const hardness = hardnessOf(c.ranks, o.worstTokenShare);
    // Too hard only when every chain is above k, i.e. when even the best chain is: min > k.
    if (hardness > o.maxRank) return { exampleId: c.exampleId, kept: false, stage: 'too-hard', hardness, score: null };
    return { exampleId: c.exampleId, kept: true, stage: 'kept', hardness, score: scoreOf(c.logprobs) };
  });

  // Order on (score, exampleId) only, so what is dropped does not depend on candidate order.
  const survivors = decisions.filter((d) => d.stage === 'kept');
  const ranked = [...survivors].sort((a, b) => a.score! - b.score! || (a.exampleId < b.exampleId ? -1 : 1));
  const dropCount = Math.floor(snapToHalf(o.dropShare * survivors.length));
  for (const d of ranked.slice(0, dropCount)) {
    d.stage = 'too-easy';
    d.kept = false;
  }

  const keptIds = new Set(decisions.filter((d) => d.stage === 'kept').map((d) => d.exampleId));
  const previous = [...new Set(previousTrainingSet)];
  const carryCount = Math.round(snapToHalf(o.carryShare * previous.length));
  const pool = previous.filter((id) => !keptIds.has(id));
  const carried = chooseDeterministic(pool, Math.min(carryCount, pool.length), [o.seed, CARRY_OVER_PURPOSE, o.round]);

  for (const id of carried) {
    const index = seen.get(id);
    if (index === undefined) {
      decisions.push({ exampleId: id, kept: true, stage: 'carried-over', hardness: null, score: null });
    } else {
      decisions[index]!.stage = 'carried-over';
      decisions[index]!.kept = true;
    }
  }

  const count = (stage: FilterStage): number => decisions.filter((d) => d.stage === stage).length;
  return {
    subset: [...keptIds, ...carried],
    decisions,
    droppedTooHard: count('too-hard'),
    droppedTooEasy: count('too-easy'),
    carriedOver: carried.length,
  };
}
