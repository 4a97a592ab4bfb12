// Losing the policy state and getting it back. A pinned activity that failed for a reason other than
// bad input means the pinned worker or its state is gone: the run pins another worker, loads the
// latest valid checkpoint there, rewinds its position to it and replays, bit for bit. It gives up when
// one step has failed orchestration.maxAttemptsPerStep times (a worker that dies at that step every time
// would otherwise loop for ever, each rewind completing the steps before it). Failures no re-pin can
// fix end the run, named by their cause.
import { ActivityFailure, ApplicationFailure, log } from '@temporalio/workflow';
import { FATAL_FAILURES, type FailureType } from '../activities/errors.js';
import { failedAttempt } from '../dro/attempts.js';
import { anyPolicyWorker, pinned, PINNED_ACTIVITIES } from './activity-options.js';
import { startEvaluationIfDue } from './run-evaluations.js';
import type { RunState } from './run-state.js';

const isFatal = (err: ActivityFailure): boolean => err.cause instanceof ApplicationFailure && FATAL_FAILURES.includes((err.cause.type ?? '') as FailureType);

/**
 * A pinned activity failed for a reason other than bad input: the worker or its state is gone, and a
 * re-pin and a rewind recover. (A bug in a pinned activity looks the same, and ends in the give-up.)
 */
export function isRecoverableByRepin(err: unknown): err is ActivityFailure {
  return err instanceof ActivityFailure && PINNED_ACTIVITIES.has(err.activityType) && !isFatal(err);
}

/** The run's own failure for an activity's bad-input failure, so the run's status names the cause. */
function asRunFailure(err: unknown): unknown {
  if (err instanceof ActivityFailure && isFatal(err)) {
    const cause = err.cause as ApplicationFailure;
    return ApplicationFailure.create({ type: cause.type ?? undefined, message: cause.message, nonRetryable: true, cause: err });
  }
  return err;
}

/** Pins a policy worker and loads the run's latest valid checkpoint (or a fresh model) there. */
async function pinAndLoad(run: RunState): Promise<void> {
  const { state } = run;
  const pin = await anyPolicyWorker(run.enter('pinning', 'a policy worker')).pinPolicyWorker(run.ref());
  // Loading reads the store, which may be having an outage: more patience than other pinned work.
  const patient = { retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 10 } };
  const loaded = await pinned(pin.queue, run.config, run.enter('loading', 'the latest valid checkpoint'), patient).loadPolicy(run.ref());
  state.policyQueue = pin.queue;
  // The new pin publishes the loaded state before its first units: an older version may be retired from the store.
  state.policy = null;
  for (const s of loaded.skippedInvalid) run.note(`checkpoint ${s.step} is invalid (${s.reason}); not used`);
  for (const n of loaded.runtimeNotes) run.note(n);
  if (loaded.checkpoint) {
    const from = loaded.checkpoint.step;
    if (state.highestStep > from) state.replayedSteps += state.highestStep - from;
    state.position = loaded.checkpoint.position;
    state.lastCheckpoint = from;
    log.info(`policy worker ${pin.identity} holds checkpoint ${from}`);
    // A worker lost right after committing this checkpoint never got to start its evaluation.
    await startEvaluationIfDue(run, from);
  } else {
    state.position = null;
    state.lastCheckpoint = null;
  }
}

/**
 * Runs `body` on the pinned worker's queue (pinning one and loading the latest valid checkpoint first
 * when there is none); when the policy state is lost, pins another and runs `body` again from there.
 */
export async function withRewinds<T>(run: RunState, body: (queue: string) => Promise<T>): Promise<T> {
  const { state } = run;
  for (;;) {
    try {
      if (state.policyQueue === null) await pinAndLoad(run);
      return await body(state.policyQueue!);
    } catch (err) {
      if (!isRecoverableByRepin(err)) throw asRunFailure(err);
      // The step the loss interrupted; a loss while pinning or loading counts against the step to come.
      const step = run.inStep ?? (state.position ? state.position.step + 1 : 0);
      // A run started before orchestration.maxAttemptsPerStep existed carries a config without it (the default applies).
      const { failures, attempts, exhausted } = failedAttempt(state.stepFailures, step, run.config.orchestration.maxAttemptsPerStep);
      state.stepFailures = failures;
      run.inStep = null;
      state.repins++;
      const lost = `${err.activityType}: ${err.cause?.message ?? err.message}`;
      run.note(`policy worker ${state.policyQueue} lost the run's state (${lost}); pinning another and rewinding to the latest checkpoint`);
      if (exhausted) {
        const message = `step ${step} failed ${attempts} times (orchestration.maxAttemptsPerStep); the last failure: ${lost}. The checkpoints are intact: fix the cause and continue with \`dro resume --run ${run.runId}\``;
        throw ApplicationFailure.create({ type: 'PolicyStateLost', message, nonRetryable: true, cause: err });
      }
      state.policyQueue = null;
    }
  }
}
