// R3-based dynamic data filtering (DRO §3.4): N chains per candidate prompt with the current policy, the
// reference outcome's ranks and log-probs after each, then dataFilterRound's two stages and carry-over.
// The new subset is written under its version's key. The chains and scores come from units any policy
// worker computes (activities/units.ts, decideFilterRound here); executions started before units existed
// run the whole round on the pinned worker (filterData).
import type { RunConfig } from '../dro/config.js';
import { configAt } from '../dro/hyperparameters.js';
import { chooseDeterministic } from '../dro/random.js';
import { dataFilterRound } from '../dro/data-filter.js';
import { DataSampler, type SamplerCursor } from '../datasets/sampler.js';
import type { BlobStore } from '../storage/blob-store.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import { writeFilterRound, writeSubset } from './records.js';
import type { PolicyHost } from './policy-host.js';
import { requireHost, versionOf } from './policy-host.js';
import { readSubset } from './policy-state.js';
import { runData, type RunData } from './run-data.js';
import { sampleGroups, scorePlanOf, scoreReferenceAfterChains, type RolloutArtifact, type ScoresArtifact, type RolloutKey } from './training-step.js';
import type { FilterSummary, RunRef } from './types.js';

/** Filtering round r runs after step r·K (round 0 before step 1) and produces subset version r + 1. */
export const subsetVersionOfRound = (round: number): number => round + 1;

/** Where a filtering round stands: the step it runs after, and the data cursor and subset it filters. */
export interface FilterRoundInput {
  step: number;
  round: number;
  cursor: SamplerCursor;
  subsetVersion: number;
}

/** The prompts a round scores: filtering.candidatesPerRound of the pool, drawn by the round's key (all when 0 or more than the pool). */
export function filterCandidates(config: RunConfig, data: RunData, round: number): { id: string; promptIds: number[] }[] {
  const f = config.filtering;
  const pool = [...data.train.keys()].sort();
  const ids = f.candidatesPerRound === 0 || f.candidatesPerRound >= pool.length ? pool : chooseDeterministic(pool, f.candidatesPerRound, [config.seed, 'filter-candidates', round]);
  return ids.map((id) => ({ id, promptIds: data.promptIds(data.train.get(id)!) }));
}

/** A round's sampling keys: of their own (seed/filter/round), so filtering never shares random draws with training rollouts. */
export const filterRolloutKey = (config: RunConfig, step: number, round: number): RolloutKey => ({ seed: `${config.seed}/filter/${round}`, step, chains: config.filtering.chainsPerPrompt });

/** The round's decision on its scored candidates: the record, the new subset, and where the cursor goes. */
export async function decideRound(
  store: BlobStore,
  run: RunRef,
  config: RunConfig,
  data: RunData,
  input: FilterRoundInput,
  groups: RolloutArtifact['groups'],
  scored: { groups: ScoresArtifact['groups']; tokens: number },
  started: number,
  signal?: AbortSignal,
): Promise<FilterSummary> {
  const f = config.filtering;
  const previous = await readSubset(store, data, run.runId, input.subsetVersion, signal);
  const result = dataFilterRound(
    scored.groups.map((g) => ({ exampleId: g.exampleId, ranks: g.ranks, logprobs: g.logprobs })),
    previous,
    { worstTokenShare: f.worstTokenShare, maxRank: f.maxRank, dropShare: f.dropShare, carryShare: f.carryShare, seed: config.seed, round: input.round },
  );
  const version = subsetVersionOfRound(input.round);
  // A round that keeps nothing would leave no data to train on: keep the previous subset and say so.
  const subset = result.subset.length > 0 ? result.subset : previous;
  const generatedTokens = groups.reduce((a, g) => a + g.completions.reduce((b, c) => b + c.ids.length, 0), 0);
  // The round's compute beside a step's (metrics' tokens), so filtering's cost can be counted against what it saves.
  const tokens = { generated: generatedTokens, scored: scored.tokens };
  await writeFilterRound(store, run.runId, { round: input.round, step: input.step, tokens, decisions: result.decisions, emptyRoundKeptPrevious: result.subset.length === 0 }, signal);
  await writeSubset(store, run.runId, { version, round: input.round, subset: [...subset].sort() }, signal);
  const cursor = new DataSampler(previous, input.cursor).withSubset(subset, version).cursor;
  return {
    round: input.round,
    subsetVersion: version,
    cursor,
    candidates: groups.length,
    kept: subset.length,
    droppedTooHard: result.droppedTooHard,
    droppedTooEasy: result.droppedTooEasy,
    carriedOver: result.carriedOver,
    generatedTokens,
    seconds: seconds(started),
  };
}

export function createFilteringActivities(deps: { host?: PolicyHost; openStore: StoreOpener }) {
  /** A whole round on the pinned worker, for executions started before units existed. */
  async function filterData(run: RunRef, input: FilterRoundInput): Promise<FilterSummary> {
    const started = performance.now();
    const hosted = await requireHost(deps.host).require(versionOf(run, input.step));
    // The settings of the step just completed: a change applies from the step after it.
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    return withHeartbeat(async (progress) => {
      const prompts = filterCandidates(config, data, input.round);
      const groups = await sampleGroups(hosted.engine, data, config, prompts, filterRolloutKey(config, input.step, input.round), progress);
      const scored = await scoreReferenceAfterChains(hosted.engine, data, groups, { masked: false, plan: scorePlanOf(config) }, progress);
      return decideRound(store, run, config, data, input, groups, scored, started, progress.signal);
    });
  }
  return { filterData };
}
