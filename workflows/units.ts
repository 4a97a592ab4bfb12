// A step's rollouts and reference scoring, and a filtering round's, as units spread over every policy
// worker (docs/architecture.md, "One run on many machines"): the units are fixed by the batch plan
// (dro/units.ts), never by how many workers poll, each names the published policy version it computes on,
// and the combining activity puts their stored results together in plan order into the same artifacts
// one worker writes.
import type { FilterSummary, PublishedPolicy, RolloutSummary, ScoreSummary, UnitSummary } from '../activities/types.js';
import type { LoopPosition } from '../activities/types.js';
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

/** A unit of the run, on the queue every policy worker polls. */
const work = (run: RunState, summary: string) => unitWork(run.config.orchestration.heartbeatSeconds, summary);

/** Workflow time since `since`: a phase's wall time across its units, for the metrics' timing. */
const secondsSince = (since: number): number => (Date.now() - since) / 1000;

/** G chains per prompt from the policy of step − 1, then the reference outcome's log-probs after each (and the masked chain), in units. */
export async function stepInUnits(run: RunState, step: number, exampleIds: string[], policy: PublishedPolicy): Promise<{ rollout: RolloutSummary; score: ScoreSummary }> {
  const config = configAt(run.config, run.state.hyperparameters, step);
  const { groupSize, batchSequences } = config.rollout;
  let started = Date.now();
  let summary = run.enter('rollout', step);
  const rollouts = unitCount(exampleIds.length * groupSize, batchSequences);
  run.unitsDone(step, 'rollout', await fanOut(rollouts, (unit) => work(run, `${summary} · unit ${unit + 1}/${rollouts}`).rolloutUnit(run.ref(), { step, unit, policy, exampleIds })));
  const rollout = { ...(await local(`${summary} · combine`).combineRollout(run.ref(), { step, policy, exampleIds })), seconds: secondsSince(started) };
  // The reference outcome's log-probs after each chain: the tokens R3 weighs.
  started = Date.now();
  summary = run.enter('score', step);
  const scores = unitCount(scoredSequences(exampleIds.length, groupSize, config.dro.r3.contrast === 'masked'), batchSequences);
  run.unitsDone(step, 'scoring', await fanOut(scores, (unit) => work(run, `${summary} · unit ${unit + 1}/${scores}`).scoreUnit(run.ref(), { step, unit, policy, exampleIds })));
  const score = { ...(await local(`${summary} · combine`).combineScores(run.ref(), { step, policy, exampleIds })), seconds: secondsSince(started) };
  return { rollout, score };
}

/** Filtering round `round` after step `step` on the policy of that step: its candidates' chains and scores in units, then the decision. */
export async function filterInUnits(run: RunState, step: number, round: number, position: LoopPosition, policy: PublishedPolicy): Promise<FilterSummary> {
  const config = configAt(run.config, run.state.hyperparameters, step);
  const { batchSequences } = config.rollout;
  const summary = run.enter('filter', `round ${round} after step ${step}`);
  // The round's candidates follow from the config and the round; the combine reports how many.
  const chains = await local(`${summary} · plan`).filterRoundSize(run.ref(), { step, round });
  const rollouts = unitCount(chains, batchSequences);
  run.unitsDone(step, `filtering round ${round} rollout`, await fanOut(rollouts, (unit) => work(run, `${summary} · rollout unit ${unit + 1}/${rollouts}`).rolloutUnit(run.ref(), { step, unit, policy, round })));
  await local(`${summary} · combine rollouts`).combineRollout(run.ref(), { step, policy, round });
  const scores = unitCount(chains, batchSequences);
  run.unitsDone(step, `filtering round ${round} scoring`, await fanOut(scores, (unit) => work(run, `${summary} · score unit ${unit + 1}/${scores}`).scoreUnit(run.ref(), { step, unit, policy, round })));
  return local(`${summary} · decide`).decideFilterRound(run.ref(), { step, round, cursor: position.cursor, subsetVersion: position.subsetVersion, policy });
}
