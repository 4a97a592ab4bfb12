// A step's units (dro/units.ts) as activities that any policy worker takes from the shared units queue:
// a unit of rollouts or of R3's reference scoring is one engine call of the batch plan, computed on the
// published policy version it names (the pinned trainer's own engine when it holds that version, else
// one loaded from the store), and stored under a key that digests everything it was computed from. The
// step then combines the units in plan order into the same rollout.json and scores.json a single
// worker writes. A unit result is stored put-if-absent: the first bytes win, a retry or a zombie's late
// attempt finds them, and bytes that differ (only a worker with another runtime fingerprint computes
// other bytes) are reported, never written over.
import { createHash } from 'node:crypto';
import { log } from '@temporalio/activity';
import { configAt } from '../dro/hyperparameters.js';
import { canonicalJson, type RunConfig } from '../dro/config.js';
import { scoredSequences, unitCount, unitRange } from '../dro/units.js';
import { fingerprintId, runtimeFingerprint } from '../engine/index.js';
import type { BlobStore } from '../storage/blob-store.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import type { FaultPlan } from './faults.js';
import { requireHost, versionOf, type PolicyHost } from './policy-host.js';
import { fetchPolicy, publishPolicy } from './policy-versions.js';
import { readJson, runKeys, writeJson } from './records.js';
import { runData } from './run-data.js';
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
  type ScoresArtifact,
} from './training-step.js';
import type { PublishedPolicy, RolloutSummary, RolloutUnitInput, RunRef, ScoreSummary, UnitInput, UnitSummary } from './types.js';

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

const encoder = new TextEncoder();
const sha = (text: string | Uint8Array): string => createHash('sha256').update(text).digest('hex');

/** What a unit's result is a function of, digested: a unit of other inputs (another policy, a changed setting, another batch) gets another key. */
function unitInputs(run: RunRef, config: RunConfig, input: UnitInput, batch: string): string {
  return sha(canonicalJson({ configHash: run.configHash, settings: config, step: input.step, unit: input.unit, policy: input.policy.sha256, batch })).slice(0, 16);
}

/** Stores a unit's result unless one is there: 'new', or whether the stored bytes are these ('same') or others ('conflict', kept). */
async function storeUnit(store: BlobStore, key: string, value: unknown, signal?: AbortSignal): Promise<UnitSummary['stored']> {
  const bytes = encoder.encode(`${JSON.stringify(value)}\n`);
  if (await store.putIfAbsent(key, bytes, { signal })) return 'new';
  const stored = await store.get(key, { signal });
  return Buffer.from(stored).equals(Buffer.from(bytes)) ? 'same' : 'conflict';
}

async function isStored(store: BlobStore, key: string, signal?: AbortSignal): Promise<boolean> {
  return (await store.list(key, { signal })).some((b) => b.key === key);
}

export function createUnitActivities(deps: { host?: PolicyHost; openStore: StoreOpener; faults: FaultPlan; identity: string }) {
  /**
   * Computes one unit on the version it names and stores it: the engine is checked to hold that version
   * before and after, so an update that ran in between (a zombie attempt on the trainer) is never stored.
   */
  async function computeUnit<T>(
    run: RunRef,
    input: UnitInput,
    kind: 'rollout' | 'score',
    batch: string,
    compute: (engine: Awaited<ReturnType<PolicyHost['forUnit']>>['engine'], progress: Parameters<Parameters<typeof withHeartbeat>[0]>[0]) => Promise<{ result: T; sequences: number; tokens: number }>,
  ): Promise<UnitSummary> {
    const started = performance.now();
    const host = requireHost(deps.host);
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    const key = runKeys.unit(run.runId, input.step, kind, input.unit, unitInputs(run, config, input, batch));
    return withHeartbeat(async (progress) => {
      const fingerprint = fingerprintId(runtimeFingerprint(config.model));
      const done = { unit: input.unit, worker: deps.identity, fingerprint };
      if (await isStored(store, key, progress.signal)) return { ...done, sequences: 0, tokens: 0, stored: 'found', seconds: seconds(started), loadSeconds: 0 };
      const loading = performance.now();
      const { engine, loaded } = await host.forUnit(run, input.policy, data, () => fetchPolicy(store, run.runId, input.policy, progress.signal));
      const loadSeconds = loaded ? seconds(loading) : 0;
      const expected = versionOf(run, input.policy.step);
      const { result, sequences, tokens } = await compute(engine, progress);
      if (!(await host.holds(engine, expected))) throw new Error(`the engine of ${kind} unit ${input.unit} of step ${input.step} no longer holds version ${input.policy.step} (an update ran meanwhile): not stored`);
      const stored = await storeUnit(store, key, result, progress.signal);
      if (stored === 'conflict') log.warn(`${kind} unit ${input.unit} of step ${input.step}: ${key} already holds other bytes than this worker's (${fingerprint}); the stored result stays`);
      return { ...done, sequences, tokens, stored, seconds: seconds(started), loadSeconds };
    });
  }

  /** One unit of a step's rollouts: its rollout.batchSequences chains of the plan, on the policy of step − 1. */
  async function rolloutUnit(run: RunRef, input: RolloutUnitInput): Promise<UnitSummary> {
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(run.config, run.configHash);
    const requests = rolloutRequests(stepPrompts(data, input.step, input.exampleIds), { seed: config.seed, step: input.step, chains: config.rollout.groupSize });
    const { start, end } = unitRange(input.unit, config.rollout.batchSequences, requests.length);
    return computeUnit<RolloutUnitResult>(run, input, 'rollout', input.exampleIds.join('\n'), async (engine, progress) => {
      deps.faults.at('rollout', input.step);
      const results = await generateInPlan(engine, requests.slice(start, end), rolloutSampling(config, data), config.rollout.batchSequences, progress);
      const completions = results.map((r) => completionOf(data, r));
      return { result: { step: input.step, unit: input.unit, completions }, sequences: completions.length, tokens: completions.reduce((a, c) => a + c.ids.length, 0) };
    });
  }

  /** One unit of R3's reference scoring: its requests of the plan (each chain's context, then the reference), on the policy of step − 1. */
  async function scoreUnit(run: RunRef, input: UnitInput): Promise<UnitSummary> {
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    const rolloutBytes = await store.get(runKeys.rollout(run.runId, input.step));
    const rollout = JSON.parse(new TextDecoder().decode(rolloutBytes)) as RolloutArtifact;
    const { requests } = referenceScoreRequests(data, rollout.groups, config.dro.r3.contrast === 'masked');
    const plan = scorePlanOf(config);
    const { start, end } = unitRange(input.unit, plan.chunkSize, requests.length);
    return computeUnit<ScoreUnitResult>(run, input, 'score', sha(rolloutBytes), async (engine, progress) => {
      const scored = await scoreInPlan(engine, requests.slice(start, end), plan, progress);
      return { result: { step: input.step, unit: input.unit, scored }, sequences: scored.length, tokens: scored.reduce((a, r) => a + r.logprobs.length, 0) };
    });
  }

  /** The step's rollout.json from its units, in plan order, exactly as one worker's rollout writes it. */
  async function combineRollout(run: RunRef, input: { step: number; exampleIds: string[]; policy: PublishedPolicy }): Promise<RolloutSummary> {
    const started = performance.now();
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    const prompts = stepPrompts(data, input.step, input.exampleIds);
    const units = unitCount(prompts.length * config.rollout.groupSize, config.rollout.batchSequences);
    const completions: RolloutUnitResult['completions'] = [];
    for (let unit = 0; unit < units; unit++) {
      const key = runKeys.unit(run.runId, input.step, 'rollout', unit, unitInputs(run, config, { step: input.step, unit, policy: input.policy }, input.exampleIds.join('\n')));
      completions.push(...(await readJson<RolloutUnitResult>(store, key)).completions);
    }
    const artifact: RolloutArtifact = { step: input.step, groups: groupCompletions(prompts, completions, config.rollout.groupSize) };
    await writeJson(store, runKeys.rollout(run.runId, input.step), artifact);
    return rolloutSummaryOf(data, artifact, started);
  }

  /** The step's scores.json from its units, in plan order, exactly as one worker's scoreReference writes it. */
  async function combineScores(run: RunRef, input: { step: number; policy: PublishedPolicy }): Promise<ScoreSummary> {
    const started = performance.now();
    const config = configAt(run.config, run.hyperparameters, input.step);
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    const rolloutBytes = await store.get(runKeys.rollout(run.runId, input.step));
    const rollout = JSON.parse(new TextDecoder().decode(rolloutBytes)) as RolloutArtifact;
    const masked = config.dro.r3.contrast === 'masked';
    const { shape } = referenceScoreRequests(data, rollout.groups, masked);
    const units = unitCount(scoredSequences(rollout.groups.length, config.rollout.groupSize, masked), config.rollout.batchSequences);
    const scored: ScoreUnitResult['scored'] = [];
    for (let unit = 0; unit < units; unit++) {
      const key = runKeys.unit(run.runId, input.step, 'score', unit, unitInputs(run, config, { step: input.step, unit, policy: input.policy }, sha(rolloutBytes)));
      scored.push(...(await readJson<ScoreUnitResult>(store, key)).scored);
    }
    const { groups, tokens } = groupScores(shape, scored, masked);
    await writeJson(store, runKeys.scores(run.runId, input.step), { step: input.step, groups } satisfies ScoresArtifact);
    return { sequences: scored.length, scoredTokens: tokens, seconds: seconds(started) };
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

  return { rolloutUnit, scoreUnit, combineRollout, combineScores, publishPolicyVersion };
}
