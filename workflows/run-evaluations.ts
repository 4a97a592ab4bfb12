// A training run's evaluations, each a child workflow (evaluate-checkpoint.ts): one started on each
// committed checkpoint the cadence names, which training does not wait for, and the base and final
// ones the run waits for and reports.
import { ApplicationFailure, executeChild, startChild } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { EvaluationOutcome } from '../activities/types.js';
import { configAt } from '../dro/hyperparameters.js';
import { evaluationDue } from '../dro/schedule.js';
import { evaluateCheckpoint } from './evaluate-checkpoint.js';
import { CONTROL_QUEUE, evaluationWorkflowId } from './messages.js';
import type { RunState } from './run-state.js';

/** Starts the evaluation of a just-committed checkpoint when the cadence says so; training does not wait. */
export async function startEvaluationIfDue(run: RunState, step: number): Promise<void> {
  const { runId, config, state } = run;
  // evaluation.every is changeable, so the step's own config decides.
  if (!evaluationDue(configAt(config, state.hyperparameters, step), step) || state.evaluationsStarted.includes(step)) return;
  try {
    await startChild(evaluateCheckpoint, {
      workflowId: evaluationWorkflowId(runId, step),
      taskQueue: CONTROL_QUEUE,
      args: [{ runId, store: config.checkpoint.store, step }],
      parentClosePolicy: 'ABANDON',
      staticSummary: `evaluate step ${step} of run ${runId}`,
    });
  } catch (err) {
    // Started before a rewind or by `dro eval`: that evaluation is the one.
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  state.evaluationsStarted = [...state.evaluationsStarted, step].slice(-100);
}

/** The before/after evaluations the run reports: a child workflow, waited for. */
export async function evaluate(run: RunState, step: number, label: 'base' | 'final'): Promise<void> {
  const { runId, config, state } = run;
  run.setPhase('evaluate');
  const result: EvaluationOutcome = await executeChild(evaluateCheckpoint, {
    workflowId: evaluationWorkflowId(runId, step),
    taskQueue: CONTROL_QUEUE,
    args: [{ runId, store: config.checkpoint.store, step }],
    staticSummary: `evaluate step ${step} (${label}) of run ${runId}`,
  });
  if (result.step === null) throw ApplicationFailure.create({ type: 'InvalidData', message: result.message, nonRetryable: true });
  state.evaluations = { ...state.evaluations, [label]: { step, ...result.metrics } };
}
