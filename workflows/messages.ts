// The contract between the workflows, their workers and their clients: task queue names, workflow ids,
// the search attributes runs are listed by, and the signals, queries and updates a run answers.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { HyperparameterChange, HyperparameterRequest, HyperparameterValues } from '../dro/hyperparameters.js';

/** Workflows and light activities (data, rewards, metrics). */
export const CONTROL_QUEUE = 'dro-control';
/** Any policy worker: pinning a run to a worker. Each policy worker also polls a queue of its own. */
export const POLICY_QUEUE = 'dro-policy';
/** Any policy worker, one evaluation at a time each (an evaluation loads a model copy of its own). */
export const EVALUATION_QUEUE = 'dro-evaluation';
/** Any policy worker, one unit at a time each: a step's rollouts and reference scoring, cut into units by the batch plan. */
export const UNITS_QUEUE = 'dro-units';

/** The patch that moved rollouts, reference scoring, filtering rounds and evaluations into units (workflows/units.ts): executions started before it keep the pinned paths. */
export const UNITS_PATCH = 'work-units';

/** One workflow id per run, so a resumed run continues under the same id. */
export const trainingWorkflowId = (runId: string): string => `dro-train-${runId}`;
/** One workflow id per evaluated step, so two requests for the same evaluation meet. */
export const evaluationWorkflowId = (runId: string, step: number | null): string => `dro-eval-${runId}-${step === null ? 'latest' : String(step).padStart(8, '0')}`;
/** The schedule that evaluates a run's newest checkpoint (`dro schedule-eval`). */
export const evaluationScheduleId = (runId: string): string => `dro-eval-schedule-${runId}`;

/**
 * Custom search attributes of a training run's workflow, so `dro runs` and the Web UI can list and
 * filter runs (`DroStatus = "paused"`). They must exist on the namespace: `npm run services:up` adds
 * them on the dev server; on a cluster, `temporal operator search-attribute create` (README).
 */
export const searchAttributes = {
  runId: defineSearchAttributeKey('DroRunId', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('DroStatus', SearchAttributeType.KEYWORD),
  task: defineSearchAttributeKey('DroTask', SearchAttributeType.KEYWORD),
  step: defineSearchAttributeKey('DroStep', SearchAttributeType.INT),
  reward: defineSearchAttributeKey('DroReward', SearchAttributeType.DOUBLE),
} as const;

/** What DroStatus says while the workflow is open, and how a run that ended by itself or on request closes. */
export type RunStatus = 'running' | 'paused' | 'stopping' | 'stopped' | 'completed' | 'failed';

/**
 * What a run is doing: one vocabulary for the progress query's `phase`, the Web UI, and the activity
 * summaries. A step's phases come in the paper's order (sample the prompts, roll out G chains, score
 * the reference after each chain, reward, update, record); rollout, score, reward and update also name
 * the metrics record's `timing` keys and the step record's fields (activities/types.ts StepRecordInput).
 */
export const PHASES = ['pinning', 'loading', 'warm-start', 'publish', 'sample', 'rollout', 'score', 'reward', 'update', 'record', 'filter', 'checkpoint', 'evaluate', 'paused', 'stopped', 'done'] as const;
export type Phase = (typeof PHASES)[number];

export interface StepBrief {
  step: number;
  reward: number;
  loss: number | null;
  completionTokens: number;
}

/** A policy worker that computed units of the run: its Temporal identity, units computed, and the last step it computed one of. */
export interface WorkerBrief {
  worker: string;
  units: number;
  lastStep: number;
  /** Its runtime fingerprint (engine/fingerprint.ts): what its bits depend on. */
  fingerprint: string;
}

export interface TrainingProgress {
  runId: string;
  status: RunStatus;
  step: number;
  totalSteps: number;
  phase: Phase;
  paused: boolean;
  /** A stop was requested: the run ends after the current step and its checkpoint. */
  stopping: boolean;
  lastCheckpoint: number | null;
  policyWorker: string | null;
  /** The workers that computed the run's units, most recent first; absent from runs started before units existed. */
  workers?: WorkerBrief[];
  recent: StepBrief[];
  /** Training steps per hour over the recent steps of this execution (workflow time, pauses left out). */
  stepsPerHour: number | null;
  /** Seconds to the last step at that rate; null while paused or before two steps. */
  etaSeconds: number | null;
  /** Every hyper-parameter change accepted, with the step it applies from. */
  hyperparameters: HyperparameterChange[];
  /** The changeable hyper-parameters as the next step will use them. */
  nextStepSettings: Required<HyperparameterValues>;
  repins: number;
  executions: number;
  /** Steps completed over the run's life, replays after a rewind included. */
  stepsCompleted: number;
  evaluations: Record<string, Record<string, number>>;
  /** Steps whose evaluation was started as a child workflow (training did not wait for them). */
  evaluationsStarted: number[];
  notes: string[];
}

export interface SetHyperparametersResult {
  change: HyperparameterChange;
  /** The values from change.fromStep on. */
  settings: Required<HyperparameterValues>;
}

export const progressQuery = defineQuery<TrainingProgress>('progress');
/** Hold the run at the next step boundary; it keeps its state and its policy worker, and runs no activity. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Finish the current step, commit a checkpoint at it, and end the run as stopped (`dro resume` continues it). */
export const stopSignal = defineSignal('stop');
export const setHyperparametersUpdate = defineUpdate<SetHyperparametersResult, [HyperparameterRequest]>('setHyperparameters');
