// R3-based dynamic data filtering (DRO §3.4) as an activity on the pinned policy worker: N chains per
// candidate prompt with the current policy, the reference outcome's ranks and log-probs after each, then
// dataFilterRound's two stages and carry-over. The new subset is written under its version's key.
import { configAt } from '../dro/hyperparameters.js';
import { chooseDeterministic } from '../dro/random.js';
import { dataFilterRound } from '../dro/data-filter.js';
import { DataSampler, type SamplerCursor } from '../datasets/sampler.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import { writeFilterRound, writeSubset } from './records.js';
import type { PolicyHost } from './policy-host.js';
import { requireHost, versionOf } from './policy-host.js';
import { readSubset } from './policy-state.js';
import { runData } from './run-data.js';
import { sampleGroups, scorePlanOf, scoreReferenceAfterChains } from './training-step.js';
import type { FilterSummary, RunRef } from './types.js';

/** Filtering round r runs after step r·K (round 0 before step 1) and produces subset version r + 1. */
export const subsetVersionOfRound = (round: number): number => round + 1;

export function createFilteringActivities(deps: { host?: PolicyHost; openStore: StoreOpener }) {
  async function filterData(run: RunRef, input: { step: number; round: number; cursor: SamplerCursor; subsetVersion: number }): Promise<FilterSummary> {
    const started = performance.now();
    const hosted = await requireHost(deps.host).require(versionOf(run, input.step));
    // The settings of the step just completed: a change applies from the step after it.
    const config = configAt(run.config, run.hyperparameters, input.step);
    const f = config.filtering;
    const data = await runData(config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    return withHeartbeat(async (progress) => {
      const pool = [...data.train.keys()].sort();
      const candidates = f.candidatesPerRound === 0 || f.candidatesPerRound >= pool.length ? pool : chooseDeterministic(pool, f.candidatesPerRound, [config.seed, 'filter-candidates', input.round]);
      const prompts = candidates.map((id) => ({ id, promptIds: data.promptIds(data.train.get(id)!) }));
      // Keys of their own (seed/filter/round), so filtering never shares random draws with training rollouts.
      const seed = `${config.seed}/filter/${input.round}`;
      const groups = await sampleGroups(hosted.engine, data, config, prompts, { seed, step: input.step, chains: f.chainsPerPrompt }, progress);
      const scored = await scoreReferenceAfterChains(hosted.engine, data, groups, { masked: false, plan: scorePlanOf(config) }, progress);
      const previous = await readSubset(store, data, run.runId, input.subsetVersion, progress.signal);
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
      await writeFilterRound(store, run.runId, { round: input.round, step: input.step, tokens, decisions: result.decisions, emptyRoundKeptPrevious: result.subset.length === 0 }, progress.signal);
      await writeSubset(store, run.runId, { version, round: input.round, subset: [...subset].sort() }, progress.signal);
      const cursor = new DataSampler(previous, input.cursor).withSubset(subset, version).cursor;
      return {
        round: input.round,
        subsetVersion: version,
        cursor,
        candidates: candidates.length,
        kept: subset.length,
        droppedTooHard: result.droppedTooHard,
        droppedTooEasy: result.droppedTooEasy,
        carriedOver: result.carriedOver,
        generatedTokens,
        seconds: seconds(started),
      };
    });
  }
  return { filterData };
}
