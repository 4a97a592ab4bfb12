// The messages a training run answers (the progress query, pause, resume, stop and hyper-parameter
// changes) and the step boundary where they take effect: changes being recorded land first, then stop,
// pause and continue-as-new.
import { allHandlersFinished, condition, setHandler, workflowInfo } from '@temporalio/workflow';
import { configAt, hyperparametersOf, validateHyperparameterRequest } from '../dro/hyperparameters.js';
import { local } from './activity-options.js';
import { pauseSignal, progressQuery, resumeSignal, setHyperparametersUpdate, stopSignal } from './messages.js';
import type { RunState } from './run-state.js';

export function installRunMessages(run: RunState): void {
  const { config, state } = run;
  const changed = (): void => {
    run.publish();
    run.showDetails();
  };
  setHandler(progressQuery, () => run.progress());
  setHandler(pauseSignal, () => {
    if (state.paused || state.stopRequested) return;
    state.paused = true;
    changed();
  });
  setHandler(resumeSignal, () => {
    if (!state.paused) return;
    state.paused = false;
    changed();
  });
  setHandler(stopSignal, () => {
    if (state.stopRequested) return;
    state.stopRequested = true;
    changed();
  });
  setHandler(
    setHyperparametersUpdate,
    async (request) => {
      const change = validateHyperparameterRequest(request, config, run.nextStep());
      state.hyperparameters = [...state.hyperparameters, change];
      run.changesInFlight++;
      try {
        // In the store before the next step starts, so `dro resume` from an older checkpoint replays it.
        await local(`record hyper-parameter change from step ${change.fromStep}`).recordHyperparameters(run.ref(), state.hyperparameters);
      } catch (err) {
        state.hyperparameters = state.hyperparameters.filter((c) => c !== change);
        throw err;
      } finally {
        run.changesInFlight--;
      }
      run.showDetails();
      return { change, settings: hyperparametersOf(configAt(config, state.hyperparameters, change.fromStep)) };
    },
    {
      // Runs before the update is accepted; a rejection leaves no trace in the history.
      validator: (request) => {
        if (state.stopRequested || run.phase === 'done' || run.phase === 'stopped') throw new Error('the run is ending; start it again with `dro resume` to change its settings');
        validateHyperparameterRequest(request, config, run.nextStep());
      },
    },
  );
}

/** What the loop does at a step boundary: train the next step, stop here, or continue as a new execution. */
export type Boundary = 'train' | 'stop' | 'continue-as-new';

/** Waits out changes being recorded and a pause; then says whether the next step runs. */
export async function atStepBoundary(run: RunState): Promise<Boundary> {
  const { state } = run;
  for (;;) {
    await condition(() => run.changesInFlight === 0);
    if (state.stopRequested) return 'stop';
    if (!state.paused) break;
    run.setPhase('paused');
    run.stepTimes.length = 0;
    await condition(() => !state.paused || state.stopRequested);
  }
  if (run.stepsThisExecution >= run.config.orchestration.stepsPerExecution || workflowInfo().continueAsNewSuggested) {
    await condition(allHandlersFinished);
    return 'continue-as-new';
  }
  return 'train';
}
