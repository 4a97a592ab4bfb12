// The contract between the workflows, their workers and their clients: task queue names, the workflow
// id of a run, and the signals, queries and updates a run answers.
import { defineQuery } from '@temporalio/workflow';

/** Workflows and light activities (data, rewards, metrics). */
export const CONTROL_QUEUE = 'dro-control';
/** Any policy worker: pinning a run to a worker, evaluations. Each policy worker also polls a queue of its own. */
export const POLICY_QUEUE = 'dro-policy';

/** One workflow id per run, so a resumed run continues under the same id. */
export const trainingWorkflowId = (runId: string): string => `dro-train-${runId}`;

export type TrainingPhase = 'pinning' | 'loading' | 'warm-start' | 'filtering' | 'rollout' | 'scoring' | 'rewards' | 'update' | 'checkpoint' | 'evaluation' | 'done';

export interface StepBrief {
  step: number;
  reward: number;
  loss: number | null;
  completionTokens: number;
}

export interface TrainingProgress {
  runId: string;
  step: number;
  totalSteps: number;
  phase: TrainingPhase;
  lastCheckpoint: number | null;
  policyWorker: string | null;
  recent: StepBrief[];
  /** Training steps per hour over the recent steps of this execution (workflow time). */
  stepsPerHour: number | null;
  repins: number;
  executions: number;
  /** Steps completed over the run's life, replays after a rewind included. */
  stepsCompleted: number;
  evaluations: Record<string, Record<string, number>>;
  notes: string[];
}

export const progressQuery = defineQuery<TrainingProgress>('progress');
