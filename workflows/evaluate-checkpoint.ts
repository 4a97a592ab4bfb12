// evaluateCheckpoint: one evaluation of a run's checkpoint (the newest valid one when no step is given)
// as a workflow of its own: its completions in units that any policy worker takes (in an engine of its
// own, never a training run's state), combined into one record. The training run starts it
// as an abandoned child every evaluation.every steps, `dro eval` starts it directly, and a Temporal
// Schedule (`dro schedule-eval`) starts it on the newest checkpoint; a step already evaluated returns
// the stored result and computes nothing.
import { patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { EvaluationOutcome } from '../activities/types.js';
import { local, unitWork } from './activity-options.js';
import { EVALUATION_QUEUE, UNITS_PATCH } from './messages.js';

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

/** How long an evaluation unit may go without a heartbeat before it goes to another worker. */
const EVALUATION_HEARTBEAT_SECONDS = 10;

export async function evaluateCheckpoint(input: EvaluateCheckpointInput): Promise<EvaluationOutcome> {
  const step = input.step ?? null;
  const what = step === null ? 'the newest checkpoint' : `checkpoint ${step}`;
  const request = { runId: input.runId, store: input.store, step };
  // Executions started before units existed evaluate on one worker.
  if (!patched(UNITS_PATCH)) return policy(`evaluate ${what} of run ${input.runId}`).runEvaluation(request);
  const started = Date.now();
  const plan = await local(`plan the evaluation of ${what}`).planEvaluation(request);
  if (!('units' in plan)) return plan;
  const summary = `evaluate step ${plan.step} of run ${input.runId}`;
  // The examples' completions in units of rollout.batchSequences any policy worker may take; their metrics are those of one worker.
  // On the evaluation queue, which a worker serves beside its training units: an evaluation never holds up training.
  const work = (unit: number): Activities => unitWork(EVALUATION_HEARTBEAT_SECONDS, `${summary} · unit ${unit + 1}/${plan.units}`, EVALUATION_QUEUE);
  await Promise.all(Array.from({ length: plan.units }, (_, unit) => work(unit).evaluationUnit({ runId: input.runId, store: input.store, unit, policy: plan.policy })));
  return local(`${summary} · combine`).combineEvaluation({ runId: input.runId, store: input.store, policy: plan.policy, seconds: (Date.now() - started) / 1000 });
}
