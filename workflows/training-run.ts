// trainingRun: one DRO training run as a durable workflow (docs/architecture.md, "One training step").
// It reads as the paper's loop: pin a policy worker and load the latest checkpoint, the supervised warm
// start, the base evaluation, then per step sample → rollout → score the reference → reward → update →
// record, followed by a filtering round, a checkpoint and an evaluation when due. The machinery sits
// beside it: run-state.ts (state, progress, Web UI), run-messages.ts (pause, resume, stop, changes at
// the step boundary), rewind.ts (a lost policy state: re-pin, load the latest valid checkpoint, replay
// bit for bit), run-evaluations.ts (evaluation child workflows) and activity-options.ts.
import { continueAsNew, log, patched } from '@temporalio/workflow';
import type { RolloutSummary, ScoreSummary } from '../activities/types.js';
import { checkpointDue, filteringDue, filteringRound } from '../dro/schedule.js';
import { local, pinned } from './activity-options.js';
import { withRewinds } from './rewind.js';
import { evaluate, startEvaluationIfDue } from './run-evaluations.js';
import { atStepBoundary, installRunMessages } from './run-messages.js';
import { RunState, type TrainingRunInput, type TrainingRunResult } from './run-state.js';
import { filterInUnits, policyAt, stepInUnits } from './units.js';
import { UNITS_PATCH } from './messages.js';

export type { TrainingRunInput, TrainingRunResult, TrainingRunState } from './run-state.js';

export async function trainingRun(input: TrainingRunInput): Promise<TrainingRunResult> {
  const run = new RunState(input);
  // Decided once, before the execution's first command, so a replay meets the patch marker exactly where it was written.
  run.units = patched(UNITS_PATCH);
  const { config, total, state } = run;
  installRunMessages(run);
  run.publish();
  try {
    // A resume that changed the config writes the run's change log (its hyper-parameters among them) before any step, as `dro set` does.
    if (!input.state && input.configChanges?.length) await local('record the resumed config').recordHyperparameters(run.ref(), state.hyperparameters);
    // Pins a worker and loads the latest valid checkpoint first; a lost policy state comes back here (rewind.ts).
    return await withRewinds(run, async (queue) => {
      if (state.position === null) await warmStart(run, queue);
      // Also after a rewind: the base may have been committed by an execution that was lost before evaluating it.
      if (config.evaluation.baseAndFinal && !state.evaluations.base && !state.stopRequested) await evaluate(run, 0, 'base');
      while (run.step < total) {
        const next = await atStepBoundary(run);
        if (next === 'stop') return await stopHere(run, queue);
        if (next === 'continue-as-new') return await continueAsNew<typeof trainingRun>(run.carried());
        await trainingStep(run, queue);
      }
      if (state.stopRequested) return await stopHere(run, queue);
      if (config.evaluation.baseAndFinal && state.evaluations.final?.step !== total) await evaluate(run, total, 'final');
      await release(run, queue);
      return run.ended('completed');
    });
  } catch (err) {
    throw run.failed(err);
  }
}

/** The supervised warm start, the filtering round before training and the base checkpoint (step 0, the KL reference). */
async function warmStart(run: RunState, queue: string): Promise<void> {
  const summary = run.enter('warm-start');
  run.inStep = 0;
  await pinned(queue, run.config, summary).warmStart(run.ref());
  const cursor = await local('initial data cursor').initialCursor(run.ref());
  run.state.position = { step: 0, cursor, subsetVersion: 0 };
  await afterStep(run, queue, 0);
  run.through(0);
}

/** One DRO training step, phase by phase as in the paper; each phase names its activity in the Web UI. */
async function trainingStep(run: RunState, queue: string): Promise<void> {
  const { config } = run;
  const { cursor, subsetVersion } = run.state.position!;
  const step = run.step + 1;
  run.inStep = step;
  // The next prompts of the current (filtered) subset, through the resumable cursor.
  const batch = await local(run.enter('sample', step)).sampleBatch(run.ref(), { cursor, subsetVersion });
  let rollout: RolloutSummary;
  let score: ScoreSummary;
  if (run.units) {
    // G reasoning chains per prompt from the policy and the reference's log-probs after each, in units any policy worker may take.
    ({ rollout, score } = await stepInUnits(run, step, batch.exampleIds, await policyAt(run, queue, step - 1)));
  } else {
    // Executions started before units existed do both on the pinned worker.
    rollout = await pinned(queue, config, run.enter('rollout', step)).rollout(run.ref(), { step, exampleIds: batch.exampleIds });
    score = await pinned(queue, config, run.enter('score', step)).scoreReference(run.ref(), { step });
  }
  // R3 (or the configured reward), group-relative advantages and the group filter.
  const reward = await local(run.enter('reward', step)).computeRewards(run.ref(), { step });
  // The GRPO update with the KL penalty to the base.
  const update = await pinned(queue, config, run.enter('update', step)).update(run.ref(), { step });
  run.state.policy = update.policy ?? null;
  await local(run.enter('record', step)).recordStep(run.ref(), { step, rollout, score, reward, update });
  run.completed({ step, cursor: batch.cursor, subsetVersion }, rollout, reward, update);
  await afterStep(run, queue, step);
  run.through(step);
}

/** What follows step `step` (0: the warm start): a filtering round when due, then a checkpoint and an evaluation when due. */
async function afterStep(run: RunState, queue: string, step: number): Promise<void> {
  const { config, state } = run;
  const position = state.position!;
  if (filteringDue(config, step)) {
    const round = filteringRound(config, step);
    const filtered = run.units
      ? await filterInUnits(run, step, round, position, await policyAt(run, queue, step))
      : await pinned(queue, config, run.enter('filter', `round ${round} after step ${step}`)).filterData(run.ref(), { step, round, cursor: position.cursor, subsetVersion: position.subsetVersion });
    state.position = { ...position, cursor: filtered.cursor, subsetVersion: filtered.subsetVersion };
  }
  if (checkpointDue(config, step)) {
    await checkpoint(run, queue, step);
    await startEvaluationIfDue(run, step);
  }
}

async function checkpoint(run: RunState, queue: string, step: number): Promise<void> {
  await pinned(queue, run.config, run.enter('checkpoint', step)).saveCheckpoint(run.ref(), run.state.position!);
  run.state.lastCheckpoint = step;
}

/** Ends the run on request at the step reached, with a checkpoint there. */
async function stopHere(run: RunState, queue: string): Promise<TrainingRunResult> {
  if (run.state.lastCheckpoint !== run.step) await checkpoint(run, queue, run.step);
  await release(run, queue);
  return run.ended('stopped');
}

/** The run is over: its pinned worker lets go of the engine and has room for another run (best effort: a worker that is gone holds nothing). */
async function release(run: RunState, queue: string): Promise<void> {
  if (!run.units) return;
  try {
    await pinned(queue, run.config, 'release the policy worker', { retry: { maximumAttempts: 1 } }).releasePolicy(run.ref());
  } catch (err) {
    log.warn(`the pinned worker did not release run ${run.runId}: ${(err as Error).message}`);
  }
}
