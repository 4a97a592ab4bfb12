// evaluateCheckpoint: one evaluation of a run's checkpoint (the newest valid one when no step is given)
// as a workflow of its own, on any policy worker in an engine of its own. The training run starts it
// as an abandoned child every evaluation.every steps, `dro eval` starts it directly, and a Temporal
// Schedule (`dro schedule-eval`) starts it on the newest checkpoint; a step already evaluated returns
// the stored result and computes nothing.
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { EvaluationOutcome } from '../activities/types.js';
import { EVALUATION_QUEUE } from './messages.js';

export interface EvaluateCheckpointInput {
  runId: string;
  /** The run's store URI (credentials come from the workers' environment). */
  store: string;
  /** The checkpoint's step; absent or null: the newest valid checkpoint. */
  step?: number | null;
}

const policy = (summary: string): Activities =>
  proxyActivities<Activities>({
    taskQueue: EVALUATION_QUEUE,
    summary,
    // Loading and generating report progress every second; a silent worker is replaced by a retry elsewhere.
    heartbeatTimeout: '10 seconds',
    startToCloseTimeout: '6 hours',
    // A missing or corrupted checkpoint fails non-retryably with the reason; other failures are retried.
    retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 5 },
  });

export async function evaluateCheckpoint(input: EvaluateCheckpointInput): Promise<EvaluationOutcome> {
  const step = input.step ?? null;
  const what = step === null ? 'the newest checkpoint' : `checkpoint ${step}`;
  return policy(`evaluate ${what} of run ${input.runId}`).runEvaluation({ runId: input.runId, store: input.store, step });
}
