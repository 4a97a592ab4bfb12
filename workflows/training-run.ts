// trainingRun: one DRO training run as a durable workflow (DESIGN.md §3-§4). An optional supervised
// warm start, then per step: sample the batch, roll out, score the reference after each chain, rewards
// and advantages, the GRPO update, and on schedule a filtering round and a checkpoint. The policy
// lives on one pinned policy worker; when that worker or its state is lost the run pins another,
// loads the latest valid checkpoint there and replays from it, bit for bit.
import {
  ActivityFailure,
  ApplicationFailure,
  continueAsNew,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
  log,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { FailureType } from '../activities/errors.js';
import type { LoopPosition, RunRef, StepRecordInput } from '../activities/types.js';
import type { RunConfig } from '../dro/config.js';
import { POLICY_QUEUE, progressQuery, type StepBrief, type TrainingPhase, type TrainingProgress } from './messages.js';

export interface TrainingRunInput {
  runId: string;
  config: RunConfig;
  configHash: string;
  /** Carried across continue-as-new; absent on a fresh start or a resume (both load the latest valid checkpoint). */
  state?: TrainingRunState;
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
  evaluations: Record<string, Record<string, number>>;
  recent: StepBrief[];
  notes: string[];
}

export interface TrainingRunResult {
  runId: string;
  steps: number;
  lastCheckpoint: number;
  evaluations: Record<string, Record<string, number>>;
  repins: number;
  replayedSteps: number;
  executions: number;
}

// Light, retry-safe work (the batch, rewards, metrics) as local activities on the control worker that
// runs the workflow: each saves a server round trip (~30 ms on the dev server), a large share of a
// small model's step.
const control = proxyLocalActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
});

// Pinning waits as long as it takes for some policy worker to exist.
const anyPolicyWorker = proxyActivities<Activities>({
  taskQueue: POLICY_QUEUE,
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '10s' },
});

/** Work that needs the run's policy state, on the pinned worker's own queue. */
function pinnedActivities(queue: string, config: RunConfig, options: Partial<ActivityOptions> = {}): Activities {
  return proxyActivities<Activities>({
    taskQueue: queue,
    // Only a pinned queue may use scheduleToStart: no poller there means the worker is gone.
    scheduleToStartTimeout: config.orchestration.pinnedStartSeconds * 1000,
    heartbeatTimeout: config.orchestration.heartbeatSeconds * 1000,
    // A long rollout on a big model; liveness is the heartbeat's job, not this.
    startToCloseTimeout: '6 hours',
    // Few attempts: retries go to the same queue, and a dead worker is better replaced than waited for.
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 3 },
    ...options,
  });
}

const PINNED = new Set(['loadPolicy', 'warmStart', 'rollout', 'scoreReference', 'update', 'saveCheckpoint', 'filterData']);
const FATAL: readonly FailureType[] = ['InvalidConfig', 'InvalidData', 'NonFiniteUpdate', 'CheckpointConflict'];
/** Re-pins in a row without a completed step before the run gives up. */
const MAX_REPINS_WITHOUT_PROGRESS = 10;
const RECENT = 20;

/** A pinned activity failed for a reason other than bad input: the worker or its state is gone. */
function policyLost(err: unknown): boolean {
  if (!(err instanceof ActivityFailure) || !PINNED.has(err.activityType)) return false;
  return !(err.cause instanceof ApplicationFailure && FATAL.includes((err.cause.type ?? '') as FailureType));
}

/** The run's own failure for an activity's bad-input failure, so the run's status names the cause. */
function asRunFailure(err: unknown): unknown {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && FATAL.includes((err.cause.type ?? '') as FailureType)) {
    return ApplicationFailure.create({ type: err.cause.type ?? undefined, message: err.cause.message, nonRetryable: true, cause: err });
  }
  return err;
}

const filteringDue = (config: RunConfig, step: number): boolean => config.filtering.enabled && step < config.schedule.totalSteps && step % config.filtering.every === 0;
const roundAfter = (config: RunConfig, step: number): number => step / config.filtering.every;
const checkpointDue = (config: RunConfig, step: number): boolean => step === 0 || step % config.checkpoint.every === 0 || step === config.schedule.totalSteps;

export async function trainingRun(input: TrainingRunInput): Promise<TrainingRunResult> {
  const { runId, config, configHash } = input;
  const run: RunRef = { runId, config, configHash };
  const total = config.schedule.totalSteps;
  const state: TrainingRunState = input.state
    ? { ...input.state, executions: input.state.executions + 1 }
    : { position: null, lastCheckpoint: null, policyQueue: null, repins: 0, executions: 1, replayedSteps: 0, stepsCompleted: 0, highestStep: 0, evaluations: {}, recent: [], notes: [] };
  let phase: TrainingPhase = 'pinning';
  let stepsThisExecution = 0;
  let repinsWithoutProgress = 0;
  const stepTimes: number[] = [];

  setHandler(progressQuery, (): TrainingProgress => {
    const span = stepTimes.length >= 2 ? (stepTimes.at(-1)! - stepTimes[0]!) / 3_600_000 : 0;
    return {
      runId,
      step: state.position?.step ?? 0,
      totalSteps: total,
      phase,
      lastCheckpoint: state.lastCheckpoint,
      policyWorker: state.policyQueue,
      recent: state.recent,
      stepsPerHour: span > 0 ? (stepTimes.length - 1) / span : null,
      repins: state.repins,
      executions: state.executions,
      stepsCompleted: state.stepsCompleted,
      evaluations: state.evaluations,
      notes: state.notes,
    };
  });
  const note = (text: string): void => {
    log.warn(text);
    state.notes = [...state.notes, text].slice(-RECENT);
  };

  /** Pins a policy worker and loads the run's latest valid checkpoint (or a fresh model) there. */
  async function pinAndLoad(): Promise<void> {
    phase = 'pinning';
    const pin = await anyPolicyWorker.pinPolicyWorker();
    phase = 'loading';
    // Loading reads the store, which may be having an outage: more patience than other pinned work.
    const loaded = await pinnedActivities(pin.queue, config, { retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 10 } }).loadPolicy(run);
    state.policyQueue = pin.queue;
    for (const s of loaded.skippedInvalid) note(`checkpoint ${s.step} is invalid (${s.reason}); not used`);
    for (const n of loaded.runtimeNotes) note(n);
    if (loaded.checkpoint) {
      const from = loaded.checkpoint.step;
      if (state.highestStep > from) state.replayedSteps += state.highestStep - from;
      state.position = loaded.checkpoint.position;
      state.lastCheckpoint = from;
      log.info(`policy worker ${pin.identity} holds checkpoint ${from}`);
    } else {
      state.position = null;
      state.lastCheckpoint = null;
    }
  }

  /** The supervised warm start, its filtering round and the base checkpoint (step 0, the KL reference). */
  async function warmStartPhase(pinned: Activities): Promise<void> {
    phase = 'warm-start';
    await pinned.warmStart(run);
    const cursor = await control.initialCursor(run);
    state.position = { step: 0, cursor, subsetVersion: 0 };
    await afterStep(pinned, 0);
  }

  /** What follows step `step` (0 = the base): a filtering round when due, then a checkpoint when due. */
  async function afterStep(pinned: Activities, step: number): Promise<void> {
    const position = state.position!;
    if (filteringDue(config, step)) {
      phase = 'filtering';
      const round = roundAfter(config, step);
      const filtered = await pinned.filterData(run, { step, round, cursor: position.cursor, subsetVersion: position.subsetVersion });
      state.position = { ...position, cursor: filtered.cursor, subsetVersion: filtered.subsetVersion };
    }
    if (checkpointDue(config, step)) {
      phase = 'checkpoint';
      await pinned.saveCheckpoint(run, state.position!);
      state.lastCheckpoint = step;
    }
  }

  async function evaluate(step: number, label: string): Promise<void> {
    phase = 'evaluation';
    const result = await anyPolicyWorker.evaluateCheckpoint(run, { step });
    state.evaluations = { ...state.evaluations, [label]: { step, ...result.metrics } };
  }

  /** One DRO training step, phase by phase as in the paper. */
  async function trainingStep(pinned: Activities): Promise<void> {
    const position = state.position!;
    const step = position.step + 1;
    phase = 'rollout';
    const batch = await control.sampleBatch(run, { cursor: position.cursor, subsetVersion: position.subsetVersion });
    const rollout = await pinned.rollout(run, { step, exampleIds: batch.exampleIds });
    phase = 'scoring';
    const score = await pinned.scoreReference(run, { step });
    phase = 'rewards';
    const reward = await control.computeRewards(run, { step });
    phase = 'update';
    const update = await pinned.update(run, { step });
    const record: StepRecordInput = { step, rollout, score, reward, update };
    await control.recordStep(run, record);
    state.position = { step, cursor: batch.cursor, subsetVersion: position.subsetVersion };
    state.recent = [...state.recent, { step, reward: reward.rewards[config.dro.reward]?.mean ?? 0, loss: update.loss, completionTokens: rollout.meanCompletionTokens }].slice(-RECENT);
    state.highestStep = Math.max(state.highestStep, step);
    stepTimes.push(Date.now());
    if (stepTimes.length > RECENT) stepTimes.shift();
    stepsThisExecution++;
    state.stepsCompleted++;
    repinsWithoutProgress = 0;
    await afterStep(pinned, step);
  }

  for (;;) {
    try {
      if (state.policyQueue === null) await pinAndLoad();
      const pinned = pinnedActivities(state.policyQueue!, config);
      if (state.position === null) await warmStartPhase(pinned);
      // Also after a rewind: the base may have been committed by an execution that was lost before evaluating it.
      if (config.evaluation.baseAndFinal && !state.evaluations.base) await evaluate(0, 'base');
      while (state.position!.step < total) {
        if (stepsThisExecution >= config.orchestration.stepsPerExecution || workflowInfo().continueAsNewSuggested) {
          return await continueAsNew<typeof trainingRun>({ runId, config, configHash, state });
        }
        await trainingStep(pinned);
      }
      if (config.evaluation.baseAndFinal && state.evaluations.final?.step !== total) await evaluate(total, 'final');
      phase = 'done';
      return { runId, steps: total, lastCheckpoint: state.lastCheckpoint!, evaluations: state.evaluations, repins: state.repins, replayedSteps: state.replayedSteps, executions: state.executions };
    } catch (err) {
      if (!policyLost(err)) throw asRunFailure(err);
      state.repins++;
      repinsWithoutProgress++;
      note(`policy worker ${state.policyQueue} lost the run's state (${(err as ActivityFailure).activityType}: ${(err as ActivityFailure).cause?.message ?? (err as Error).message}); pinning another and rewinding to the latest checkpoint`);
      if (repinsWithoutProgress > MAX_REPINS_WITHOUT_PROGRESS) {
        throw ApplicationFailure.create({ type: 'PolicyStateLost', message: `the run lost its policy state ${repinsWithoutProgress} times in a row without completing a step; giving up`, nonRetryable: true, cause: err as Error });
      }
      state.policyQueue = null;
    }
  }
}
