// A step's rollouts and reference scoring as units spread over every policy worker (docs/architecture.md,
// "One run on many machines"): the units are fixed by the batch plan (dro/units.ts), never by how many
// workers poll, each names the published policy version it computes on, and the step combines their
// stored results in plan order into the same artifacts one worker writes.
import type { PublishedPolicy, RolloutSummary, ScoreSummary, UnitSummary } from '../activities/types.js';
import { configAt } from '../dro/hyperparameters.js';
import { scoredSequences, unitCount } from '../dro/units.js';
import { local, pinned, unitWork } from './activity-options.js';
import type { RunState } from './run-state.js';

/** The published version of the pinned engine's policy at `step`; published now when this pin has not yet. */
export async function policyAt(run: RunState, queue: string, step: number): Promise<PublishedPolicy> {
  const { state } = run;
  if (state.policy?.step === step) return state.policy;
  const policy = await pinned(queue, run.config, run.enter('publish', `the policy of step ${step}`)).publishPolicyVersion(run.ref(), { step });
  state.policy = policy;
  return policy;
}

/** Runs `count` units at once (Temporal hands them to whichever workers poll) and returns their summaries in unit order. */
function fanOut(count: number, start: (unit: number) => Promise<UnitSummary>): Promise<UnitSummary[]> {
  return Promise.all(Array.from({ length: count }, (_, unit) => start(unit)));
}

/** Workflow time since `since`: a phase's wall time across its units, for the metrics' timing. */
const secondsSince = (since: number): number => (Date.now() - since) / 1000;

/** G chains per prompt from the policy of step − 1, in units of rollout.batchSequences chains. */
export async function rolloutInUnits(run: RunState, step: number, exampleIds: string[], policy: PublishedPolicy): Promise<RolloutSummary> {
  const config = configAt(run.config, run.state.hyperparameters, step);
  const started = Date.now();
  const summary = run.enter('rollout', step);
  const count = unitCount(exampleIds.length * config.rollout.groupSize, config.rollout.batchSequences);
  const units = await fanOut(count, (unit) => unitWork(run.config, `${summary} · unit ${unit + 1}/${count}`).rolloutUnit(run.ref(), { step, unit, exampleIds, policy }));
  run.unitsDone(step, 'rollout', units);
  const rollout = await local(`${summary} · combine`).combineRollout(run.ref(), { step, exampleIds, policy });
  return { ...rollout, seconds: secondsSince(started) };
}

/** The reference outcome's log-probs after each chain (and the masked chain), in units of rollout.batchSequences requests. */
export async function scoreInUnits(run: RunState, step: number, prompts: number, policy: PublishedPolicy): Promise<ScoreSummary> {
  const config = configAt(run.config, run.state.hyperparameters, step);
  const started = Date.now();
  const summary = run.enter('score', step);
  const count = unitCount(scoredSequences(prompts, config.rollout.groupSize, config.dro.r3.contrast === 'masked'), config.rollout.batchSequences);
  const units = await fanOut(count, (unit) => unitWork(run.config, `${summary} · unit ${unit + 1}/${count}`).scoreUnit(run.ref(), { step, unit, policy }));
  run.unitsDone(step, 'scoring', units);
  const score = await local(`${summary} · combine`).combineScores(run.ref(), { step, policy });
  return { ...score, seconds: secondsSince(started) };
}
