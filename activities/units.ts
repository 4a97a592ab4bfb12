// A step's units (dro/units.ts) as activities that any policy worker takes from the shared units queue:
// a unit of rollouts or of R3's reference scoring, for a training step or a filtering round, is one engine
// call of the batch plan, computed on the published policy version it names (the pinned trainer's own
// engine when it holds that version, else one loaded from the store), and stored under a key that digests
// everything it was computed from. The step then combines the units in plan order into the same artifacts
// a single worker writes. A unit result is stored put-if-absent: the first bytes win, a retry or a
// zombie's late attempt finds them, and bytes that differ (only a worker with another runtime fingerprint
// computes other bytes) are reported, never written over.
import { createHash } from 'node:crypto';
import { log } from '@temporalio/activity';
import { configAt } from '../dro/hyperparameters.js';
import { canonicalJson, type RunConfig } from '../dro/config.js';
import { scoredSequences, unitCount, unitRange } from '../dro/units.js';
import type { SamplerCursor } from '../datasets/sampler.js';
import { fingerprintId, runtimeFingerprint } from '../engine/index.js';
import type { BlobStore } from '../storage/blob-store.js';
import { seconds, withHeartbeat, type Progress, type StoreOpener } from './context.js';
import type { FaultPlan } from './faults.js';
import { decideRound, filterCandidates, filterRolloutKey } from './filtering.js';
import { requireHost, versionOf, type PolicyHost } from './policy-host.js';
import { fetchPolicy, publishPolicy } from './policy-versions.js';
import { readJson, runKeys, writeJson } from './records.js';
import { runData, type RunData } from './run-data.js';
import {
  completionOf,
  generateInPlan,
  groupCompletions,
  groupScores,
  referenceScoreRequests,
  rolloutRequests,
  rolloutSampling,
  rolloutSummaryOf,
  scoreInPlan,
  scorePlanOf,
  stepPrompts,
  type RolloutArtifact,
  type RolloutKey,
  type ScoresArtifact,
} from './training-step.js';
import type { BatchUnitInput, FilterSummary, PublishedPolicy, RolloutSummary, RunRef, ScoreSummary, UnitBatch, UnitInput, UnitSummary } from './types.js';
import type { EngineClient } from '../engine/index.js';

/** A rollout unit's stored result: its sequences' completions, in plan order. */
interface RolloutUnitResult {
  step: number;
  unit: number;
  completions: RolloutArtifact['groups'][number]['completions'];
}

/** A scoring unit's stored result: log-probs and ranks of its requests, in plan order. */
interface ScoreUnitResult {
  step: number;
  unit: number;
  scored: { logprobs: number[]; ranks: number[] }[];
}

/** What a batch's units work from: its prompts and sampling keys, where its chains are combined, and what its unit keys are named. */
interface BatchPlan {
  prompts: { id: string; promptIds: number[] }[];
  key: RolloutKey;
  /** The key of the combined chains (rollout.json for a training step). */
  rolloutKey: string;
  masked: boolean;
  /** Unit key prefixes: 'rollout'/'score' for a training step, 'filter-<round>-rollout'/... for a round. */
  name: { rollout: string; score: string };
  /** What the batch is, for the unit keys' digest. */
  identity: string;
}

function batchPlan(run: RunRef, config: RunConfig, data: RunData, step: number, batch: UnitBatch): BatchPlan {
  if ('round' in batch) {
    const prompts = filterCandidates(config, data, batch.round);
    const name = `filter-${batch.round}`;
    return { prompts, key: filterRolloutKey(config, step, batch.round), rolloutKey: runKeys.filterRollout(run.runId, step, batch.round), masked: false, name: { rollout: `${name}-rollout`, score: `${name}-score` }, identity: `round ${batch.round}` };
  }
  return {
    prompts: stepPrompts(data, step, batch.exampleIds),
    key: { seed: config.seed, step, chains: config.rollout.groupSize },
    rolloutKey: runKeys.rollout(run.runId, step),
    masked: config.dro.r3.contrast === 'masked',
    name: { rollout: 'rollout', score: 'score' },
    identity: batch.exampleIds.join('\n'),
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sha = (text: string | Uint8Array): string => createHash('sha256').update(text).digest('hex');

/** What a unit's result is a function of, digested: a unit of other inputs (another policy, a changed setting, another batch) gets another key. */
function unitInputs(run: RunRef, config: RunConfig, input: UnitInput, batch: string): string {
  return sha(canonicalJson({ configHash: run.configHash, settings: config, step: input.step, unit: input.unit, policy: input.policy.sha256, batch })).slice(0, 16);
}

/** Stores a unit's result unless one is there: 'new', or whether the stored bytes are these ('same') or others ('conflict', kept). */
export async function storeUnit(store: BlobStore, key: string, value: unknown, signal?: AbortSignal): Promise<UnitSummary['stored']> {
  const bytes = encoder.encode(`${JSON.stringify(value)}\n`);
  if (await store.putIfAbsent(key, bytes, { signal })) return 'new';
  const stored = await store.get(key, { signal });
  return Buffer.from(stored).equals(Buffer.from(bytes)) ? 'same' : 'conflict';
}

export async function isStored(store: BlobStore, key: string, signal?: AbortSignal): Promise<boolean> {
  return (await store.list(key, { signal })).some((b) => b.key === key);
}

/** A batch's combined chains, and the digest its scoring units are keyed by. */
async function readRollout(store: BlobStore, key: string): Promise<{ rollout: RolloutArtifact; digest: string }> {
  const bytes = await store.get(key);
  return { rollout: JSON.parse(decoder.decode(bytes)) as RolloutArtifact, digest: sha(bytes) };
}

export function createUnitActivities(deps: { host?: PolicyHost; openStore: StoreOpener; faults: FaultPlan; identity: string }) {
  /** The settings, data and store a unit of `step` works with. */
  async function context(run: RunRef, step: number) {
    const config = configAt(run.config, run.hyperparameters, step);
    return { config, data: await runData(run.config, run.configHash), store: await deps.openStore(config.checkpoint.store) };
  }

  /**
   * Computes one unit on the version it names and stores it, unless its result is stored already: the
   * engine is checked to hold that version before and after, so an update that ran in between (a
   * zombie attempt on the trainer) is never stored.
   */
  async function computeUnit(
    run: RunRef,
    input: UnitInput,
    key: string,
    what: string,
    compute: (engine: EngineClient, progress: Progress) => Promise<{ result: unknown; sequences: number; tokens: number }>,
  ): Promise<UnitSummary> {
    const started = performance.now();
    const host = requireHost(deps.host);
    const { config, data, store } = await context(run, input.step);
    return withHeartbeat(async (progress) => {
      const fingerprint = fingerprintId(runtimeFingerprint(config.model));
      const done = { unit: input.unit, worker: deps.identity, fingerprint };
      if (await isStored(store, key, progress.signal)) return { ...done, sequences: 0, tokens: 0, stored: 'found', seconds: seconds(started), loadSeconds: 0 };
      const loading = performance.now();
      const { engine, loaded } = await host.forUnit(run, input.policy, data, () => fetchPolicy(store, run.runId, input.policy, progress.signal));
      const loadSeconds = loaded ? seconds(loading) : 0;
      const { result, sequences, tokens } = await compute(engine, progress);
      if (!(await host.holds(engine, versionOf(run, input.policy.step)))) throw new Error(`the engine of ${what} no longer holds version ${input.policy.step} (an update ran meanwhile): not stored`);
      const stored = await storeUnit(store, key, result, progress.signal);
      if (stored === 'conflict') log.warn(`${what}: ${key} already holds other bytes than this worker's (${fingerprint}); the stored result stays`);
      return { ...done, sequences, tokens, stored, seconds: seconds(started), loadSeconds };
    });
  }

  /** One unit of a batch's rollouts: its rollout.batchSequences chains of the plan. */
  async function rolloutUnit(run: RunRef, input: BatchUnitInput): Promise<UnitSummary> {
    const { config, data } = await context(run, input.step);
    const plan = batchPlan(run, config, data, input.step, input);
    const requests = rolloutRequests(plan.prompts, plan.key);
    const { start, end } = unitRange(input.unit, config.rollout.batchSequences, requests.length);
    const key = runKeys.unit(run.runId, input.step, plan.name.rollout, input.unit, unitInputs(run, config, input, plan.identity));
    return computeUnit(run, input, key, `${plan.name.rollout} unit ${input.unit} of step ${input.step}`, async (engine, progress) => {
      if (!('round' in input)) deps.faults.at('rollout', input.step);
      const results = await generateInPlan(engine, requests.slice(start, end), rolloutSampling(config, data), config.rollout.batchSequences, progress);
      const completions = results.map((r) => completionOf(data, r));
      return { result: { step: input.step, unit: input.unit, completions } satisfies RolloutUnitResult, sequences: completions.length, tokens: completions.reduce((a, c) => a + c.ids.length, 0) };
    });
  }

  /** One unit of a batch's reference scoring: its requests of the plan (each chain's context, then the reference). */
  async function scoreUnit(run: RunRef, input: BatchUnitInput): Promise<UnitSummary> {
    const { config, data, store } = await context(run, input.step);
    const plan = batchPlan(run, config, data, input.step, input);
    const { rollout, digest } = await readRollout(store, plan.rolloutKey);
    const { requests } = referenceScoreRequests(data, rollout.groups, plan.masked);
    const scorePlan = scorePlanOf(config);
    const { start, end } = unitRange(input.unit, scorePlan.chunkSize, requests.length);
    const key = runKeys.unit(run.runId, input.step, plan.name.score, input.unit, unitInputs(run, config, input, digest));
    return computeUnit(run, input, key, `${plan.name.score} unit ${input.unit} of step ${input.step}`, async (engine, progress) => {
      const scored = await scoreInPlan(engine, requests.slice(start, end), scorePlan, progress);
      return { result: { step: input.step, unit: input.unit, scored } satisfies ScoreUnitResult, sequences: scored.length, tokens: scored.reduce((a, r) => a + r.logprobs.length, 0) };
    });
  }

  /** A batch's chains from its units, in plan order, written where one worker's rollout writes them (rollout.json for a step). */
  async function combineRollout(run: RunRef, input: { step: number; policy: PublishedPolicy } & UnitBatch): Promise<RolloutSummary> {
    const started = performance.now();
    const { config, data, store } = await context(run, input.step);
    const plan = batchPlan(run, config, data, input.step, input);
    const units = unitCount(plan.prompts.length * plan.key.chains, config.rollout.batchSequences);
    const completions: RolloutUnitResult['completions'] = [];
    for (let unit = 0; unit < units; unit++) {
      const key = runKeys.unit(run.runId, input.step, plan.name.rollout, unit, unitInputs(run, config, { step: input.step, unit, policy: input.policy }, plan.identity));
      completions.push(...(await readJson<RolloutUnitResult>(store, key)).completions);
    }
    const artifact: RolloutArtifact = { step: input.step, groups: groupCompletions(plan.prompts, completions, plan.key.chains) };
    await writeJson(store, plan.rolloutKey, artifact);
    return rolloutSummaryOf(data, artifact, started);
  }

  /** A batch's reference scores from its units, grouped as one worker's scoring groups them. */
  async function combinedScores(run: RunRef, input: { step: number; policy: PublishedPolicy } & UnitBatch) {
    const { config, data, store } = await context(run, input.step);
    const plan = batchPlan(run, config, data, input.step, input);
    const { rollout, digest } = await readRollout(store, plan.rolloutKey);
    const { shape } = referenceScoreRequests(data, rollout.groups, plan.masked);
    const units = unitCount(scoredSequences(rollout.groups.length, plan.key.chains, plan.masked), config.rollout.batchSequences);
    const scored: ScoreUnitResult['scored'] = [];
    for (let unit = 0; unit < units; unit++) {
      const key = runKeys.unit(run.runId, input.step, plan.name.score, unit, unitInputs(run, config, { step: input.step, unit, policy: input.policy }, digest));
      scored.push(...(await readJson<ScoreUnitResult>(store, key)).scored);
    }
    return { config, data, store, rollout, sequences: scored.length, ...groupScores(shape, scored, plan.masked) };
  }

  /** The step's scores.json from its units, exactly as one worker's scoreReference writes it. */
  async function combineScores(run: RunRef, input: { step: number; policy: PublishedPolicy; exampleIds: string[] }): Promise<ScoreSummary> {
    const started = performance.now();
    const { store, groups, tokens, sequences } = await combinedScores(run, input);
    await writeJson(store, runKeys.scores(run.runId, input.step), { step: input.step, groups } satisfies ScoresArtifact);
    return { sequences, scoredTokens: tokens, seconds: seconds(started) };
  }

  /** How many chains filtering round `round` samples (candidates × filtering.chainsPerPrompt), so the workflow can cut them into units. */
  async function filterRoundSize(run: RunRef, input: { step: number; round: number }): Promise<number> {
    const { config, data } = await context(run, input.step);
    return filterCandidates(config, data, input.round).length * config.filtering.chainsPerPrompt;
  }

  /** A filtering round's decision from its units' chains and scores: the record, the new subset, the cursor. */
  async function decideFilterRound(run: RunRef, input: { step: number; round: number; cursor: SamplerCursor; subsetVersion: number; policy: PublishedPolicy }): Promise<FilterSummary> {
    const started = performance.now();
    const { config, data, store, rollout, groups, tokens } = await combinedScores(run, { step: input.step, policy: input.policy, round: input.round });
    return decideRound(store, run, config, data, input, rollout.groups, { groups, tokens }, started);
  }

  /** Publishes the pinned engine's state at `step` (after a load or the warm start; an update publishes its own). */
  async function publishPolicyVersion(run: RunRef, input: { step: number }): Promise<PublishedPolicy> {
    const hosted = await requireHost(deps.host).require(versionOf(run, input.step));
    const store = await deps.openStore(run.config.checkpoint.store);
    return withHeartbeat(async ({ signal }) => {
      const policy = await publishPolicy(store, run.runId, run.config, input.step, hosted.engine, signal);
      hosted.published = policy;
      return policy;
    });
  }

  return { rolloutUnit, scoreUnit, combineRollout, combineScores, filterRoundSize, decideFilterRound, publishPolicyVersion };
}
