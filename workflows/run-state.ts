// A training run's state machine: the state carried across continue-as-new, what the run is doing now
// (its phase, the step in progress, changes being recorded), and how that shows: the progress query,
// the Web UI's current details and the search attributes runs are listed by.
import { ApplicationFailure, log, setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import type { LoopPosition, PublishedPolicy, RewardSummary, RolloutSummary, RunRef, UnitSummary, UpdateSummary } from '../activities/types.js';
import type { RunConfig } from '../dro/config.js';
import { stepThrough } from '../dro/attempts.js';
import { configAt, hyperparametersOf, type HyperparameterChange } from '../dro/hyperparameters.js';
import type { ConfigChange } from '../dro/resumable.js';
import { searchAttributes, type Phase, type RunStatus, type StepBrief, type TrainingProgress, type WorkerBrief } from './messages.js';

export interface TrainingRunInput {
  runId: string;
  config: RunConfig;
  configHash: string;
  /** Carried across continue-as-new; absent on a fresh start or a resume (both load the latest valid checkpoint). */
  state?: TrainingRunState;
  /** On a resume: the run's change log from its store, so the replayed steps get the same changes. */
  hyperparameters?: HyperparameterChange[];
  /** On a resume: the config changes of the run's resumes, this one's last (`config` has them applied). */
  configChanges?: ConfigChange[];
}

export interface TrainingRunState {
  /** Where the loop stands on the pinned worker; null until a checkpoint is loaded or the base is made. */
  position: LoopPosition | null;
  lastCheckpoint: number | null;
  /** The pinned policy worker's own queue; null = pin one (and load the latest checkpoint there). */
  policyQueue: string | null;
  repins: number;
  executions: number;
  replayedSteps: number;
  /** Training steps completed over the run's life, replays included. */
  stepsCompleted: number;
  /** The furthest step the run has reached, so a rewind knows how many steps it replays. */
  highestStep: number;
  /**
   * Failed attempts at each step not yet through (its filtering round and checkpoint included), by step:
   * carried across rewinds and executions, so a step that fails every time ends the run (rewind.ts).
   * Absent in states carried by executions from before it existed.
   */
  stepFailures?: Record<string, number>;
  evaluations: Record<string, Record<string, number>>;
  evaluationsStarted: number[];
  recent: StepBrief[];
  notes: string[];
  paused: boolean;
  stopRequested: boolean;
  /** Every accepted change, in the order received; step s runs with configAt(config, these, s). */
  hyperparameters: HyperparameterChange[];
  /** The config changes of the run's resumes, for its records; absent when there are none. */
  configChanges?: ConfigChange[];
  /**
   * The policy version published for the step at `position` (the units of the next step compute on it);
   * null or absent: not published yet in this pin (a load, a rewind, or a state carried from before units).
   */
  policy?: PublishedPolicy | null;
  /** The workers that computed the run's units, most recent first (at most WORKERS). */
  workers?: WorkerBrief[];
  /** The distinct runtime fingerprints of the workers that computed units, in the order first seen. */
  fingerprints?: string[];
}

export interface TrainingRunResult {
  runId: string;
  /** completed: every step ran; stopped: ended on request at `steps` (resume continues it). */
  status: 'completed' | 'stopped';
  steps: number;
  lastCheckpoint: number;
  evaluations: Record<string, Record<string, number>>;
  repins: number;
  replayedSteps: number;
  executions: number;
}

const RECENT = 20;
/** Workers listed in the progress (the most recently active). */
const WORKERS = 16;
const FINGERPRINTS = 8;

export class RunState {
  readonly runId: string;
  readonly config: RunConfig;
  readonly configHash: string;
  readonly total: number;
  /** What continue-as-new carries. */
  readonly state: TrainingRunState;
  phase: Phase = 'pinning';
  /** The step being computed (its filtering round and checkpoint included); null between steps. */
  inStep: number | null = null;
  /** Hyper-parameter changes still being written to the run's change log; steps wait for them. */
  changesInFlight = 0;
  stepsThisExecution = 0;
  /** Whether this execution runs its rollouts, scoring, filtering and evaluations in units (false: an execution started before units existed). */
  units = false;
  /** When the recent steps of this execution ended (workflow time), for the rate; cleared by a pause. */
  readonly stepTimes: number[] = [];

  constructor(input: TrainingRunInput) {
    this.runId = input.runId;
    this.config = input.config;
    this.configHash = input.configHash;
    this.total = input.config.schedule.totalSteps;
    this.state = input.state
      ? { ...input.state, executions: input.state.executions + 1 }
      : {
          position: null,
          lastCheckpoint: null,
          policyQueue: null,
          repins: 0,
          executions: 1,
          replayedSteps: 0,
          stepsCompleted: 0,
          highestStep: 0,
          evaluations: {},
          evaluationsStarted: [],
          recent: [],
          notes: [],
          paused: false,
          stopRequested: false,
          hyperparameters: input.hyperparameters ?? [],
          ...(input.configChanges ? { configChanges: input.configChanges } : {}),
        };
  }

  /** What every activity gets: the run, its config and the changes accepted so far. */
  ref(): RunRef {
    const { hyperparameters, configChanges } = this.state;
    return { runId: this.runId, config: this.config, configHash: this.configHash, hyperparameters, ...(configChanges ? { configChanges } : {}) };
  }

  /** The last completed step (0 before the first). */
  get step(): number {
    return this.state.position?.step ?? 0;
  }

  /** The first step a change made now can still apply to. */
  nextStep(): number {
    return (this.inStep ?? this.step) + 1;
  }

  status(): RunStatus {
    return this.state.stopRequested ? 'stopping' : this.state.paused ? 'paused' : 'running';
  }

  private stepsPerHour(): number | null {
    const t = this.stepTimes;
    const span = t.length >= 2 ? (t.at(-1)! - t[0]!) / 3_600_000 : 0;
    return span > 0 ? (t.length - 1) / span : null;
  }

  /** What the Web UI shows as the run's current details (served by the worker, so only while one is up). */
  showDetails(): void {
    const { state } = this;
    const last = state.recent.at(-1);
    const lines = [
      `**${this.status()}** · step **${this.step}** of ${this.total} · phase ${this.phase}`,
      `last reward ${last ? last.reward.toFixed(4) : '-'} · last loss ${last?.loss?.toFixed(4) ?? '-'} · last checkpoint ${state.lastCheckpoint ?? '-'}`,
      `policy worker ${state.policyQueue ?? '-'} · ${this.stepsPerHour()?.toFixed(0) ?? '-'} steps/h`,
    ];
    const workers = state.workers ?? [];
    if (workers.length > 0) lines.push(`units by worker (recent first): ${workers.map((w) => `${w.worker} ${w.units} (last step ${w.lastStep})`).join(' · ')}`);
    if (state.hyperparameters.length > 0) lines.push(`changes: ${state.hyperparameters.map((c) => `from step ${c.fromStep} ${JSON.stringify({ ...c, fromStep: undefined })}`).join('; ')}`);
    setCurrentDetails(lines.join('\n\n'));
  }

  setPhase(phase: Phase): void {
    this.phase = phase;
    this.showDetails();
  }

  /** Starts `phase` and returns its activity's summary, so the Web UI's phase and event history use one name. */
  enter(phase: Phase, what?: number | string): string {
    this.setPhase(phase);
    return what === undefined ? phase : typeof what === 'number' ? `${phase} step ${what}` : `${phase} ${what}`;
  }

  publish(extra: SearchAttributeUpdatePair[] = []): void {
    upsertSearchAttributes([{ key: searchAttributes.status, value: this.status() }, { key: searchAttributes.step, value: this.step }, ...extra]);
  }

  progress(): TrainingProgress {
    const { state, total } = this;
    const rate = this.stepsPerHour();
    return {
      runId: this.runId,
      status: this.status(),
      step: this.step,
      totalSteps: total,
      phase: this.phase,
      paused: state.paused,
      stopping: state.stopRequested,
      lastCheckpoint: state.lastCheckpoint,
      policyWorker: state.policyQueue,
      workers: state.workers ?? [],
      recent: state.recent,
      stepsPerHour: rate,
      etaSeconds: rate && !state.paused ? ((total - this.step) / rate) * 3600 : null,
      hyperparameters: state.hyperparameters,
      nextStepSettings: hyperparametersOf(configAt(this.config, state.hyperparameters, this.nextStep())),
      repins: state.repins,
      executions: state.executions,
      stepsCompleted: state.stepsCompleted,
      evaluations: state.evaluations,
      evaluationsStarted: state.evaluationsStarted,
      notes: state.notes,
    };
  }

  note(text: string): void {
    log.warn(text);
    this.state.notes = [...this.state.notes, text].slice(-RECENT);
  }

  /**
   * The bookkeeping of a phase's units: who computed them, a runtime fingerprint not seen before in a run
   * whose units ran on another (the run's notes say so once per fingerprint), and results computed twice
   * with different bytes (the first stored was kept).
   */
  unitsDone(step: number, what: string, units: UnitSummary[]): void {
    const { state } = this;
    let workers = state.workers ?? [];
    const fingerprints = state.fingerprints ?? [];
    for (const u of units) {
      if (u.stored === 'conflict') this.note(`step ${step}: ${what} unit ${u.unit} was computed again by ${u.worker} (${u.fingerprint}) with other bytes than those stored first, which were kept`);
      // A result found stored was computed before (by whoever stored it), not by this worker.
      if (u.stored === 'found') continue;
      const seen = workers.find((w) => w.worker === u.worker);
      workers = [{ worker: u.worker, units: (seen?.units ?? 0) + 1, lastStep: step, fingerprint: u.fingerprint }, ...workers.filter((w) => w !== seen)].slice(0, WORKERS);
      if (!fingerprints.includes(u.fingerprint)) {
        if (fingerprints.length > 0) {
          this.note(`step ${step}: ${what} unit ${u.unit} ran on ${u.worker}, whose runtime fingerprint (${u.fingerprint}) differs from that of earlier units (${fingerprints[0]}): results may differ in the last bits from a run on one kind of machine (README, "One run on many machines")`);
        }
        fingerprints.push(u.fingerprint);
      }
    }
    state.workers = workers;
    state.fingerprints = fingerprints.slice(-FINGERPRINTS);
  }

  /** Step `step` is through, checkpoint included: it is no longer being computed and its failed attempts are forgotten. */
  through(step: number): void {
    this.inStep = null;
    this.state.stepFailures = stepThrough(this.state.stepFailures, step);
  }

  /** The bookkeeping of a completed step: where the loop stands, the recent metrics, the counters. */
  completed(position: LoopPosition, rollout: RolloutSummary, reward: RewardSummary, update: UpdateSummary): void {
    const { state } = this;
    const { step } = position;
    state.position = position;
    const mean = reward.rewards[this.config.dro.reward]?.mean ?? 0;
    state.recent = [...state.recent, { step, reward: mean, loss: update.loss, completionTokens: rollout.meanCompletionTokens }].slice(-RECENT);
    state.highestStep = Math.max(state.highestStep, step);
    this.stepTimes.push(Date.now());
    if (this.stepTimes.length > RECENT) this.stepTimes.shift();
    this.stepsThisExecution++;
    state.stepsCompleted++;
    this.publish([{ key: searchAttributes.reward, value: mean }]);
  }

  /** The input of the next execution. */
  carried(): TrainingRunInput {
    return { runId: this.runId, config: this.config, configHash: this.configHash, state: this.state };
  }

  /** Ends the run at the step reached: its final phase, DroStatus and result. */
  ended(status: TrainingRunResult['status']): TrainingRunResult {
    const { state } = this;
    this.setPhase(status === 'completed' ? 'done' : 'stopped');
    upsertSearchAttributes([{ key: searchAttributes.status, value: status satisfies RunStatus }]);
    return {
      runId: this.runId,
      status,
      steps: this.step,
      lastCheckpoint: state.lastCheckpoint!,
      evaluations: state.evaluations,
      repins: state.repins,
      replayedSteps: state.replayedSteps,
      executions: state.executions,
    };
  }

  /** The run's failure, as thrown: the workflow's own status says failed, and DroStatus too for `dro runs` filters. */
  failed(err: unknown): unknown {
    if (err instanceof ApplicationFailure) upsertSearchAttributes([{ key: searchAttributes.status, value: 'failed' satisfies RunStatus }]);
    return err;
  }
}
