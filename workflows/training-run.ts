// trainingRun: one DRO training run as a durable workflow (DESIGN.md §3-§4). An optional supervised
// warm start, then per step: sample the batch, roll out, score the reference after each chain, rewards
// and advantages, the GRPO update, and on schedule a filtering round, a checkpoint and an evaluation
// (a child workflow training does not wait for). The policy lives on one pinned policy worker; when
// that worker or its state is lost the run pins another, loads the latest valid checkpoint there and
// replays from it, bit for bit. Between steps it answers pause, resume and stop, and accepts
// hyper-parameter changes that apply from the next step (they are part of the replay too).
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  log,
  type ActivityOptions,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, type SearchAttributeUpdatePair } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import type { FailureType } from '../activities/errors.js';
import type { EvaluationOutcome, LoopPosition, RunRef, StepRecordInput } from '../activities/types.js';
import type { RunConfig } from '../dro/config.js';
import { configAt, hyperparametersOf, validateHyperparameterRequest, type HyperparameterChange } from '../dro/hyperparameters.js';
import { evaluateCheckpoint } from './evaluate-checkpoint.js';
import {
  CONTROL_QUEUE,
  evaluationWorkflowId,
  pauseSignal,
  POLICY_QUEUE,
  progressQuery,
  resumeSignal,
  searchAttributes,
  setHyperparametersUpdate,
  stopSignal,
  type RunStatus,
  type StepBrief,
  type TrainingPhase,
  type TrainingProgress,
} from './messages.js';

export interface TrainingRunInput {
  runId: string;
  config: RunConfig;
  configHash: string;
  /** Carried across continue-as-new; absent on a fresh start or a resume (both load the latest valid checkpoint). */
  state?: TrainingRunState;
  /** On a resume: the run's change log from its store, so the replayed steps get the same changes. */
  hyperparameters?: HyperparameterChange[];
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
  evaluationsStarted: number[];
  recent: StepBrief[];
  notes: string[];
  paused: boolean;
  stopRequested: boolean;
  /** Every accepted change, in the order received; step s runs with configAt(config, these, s). */
  hyperparameters: HyperparameterChange[];
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

const LOCAL_OPTIONS = {
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
} as const;

// Light, retry-safe work (the batch, rewards, metrics) as local activities on the control worker that
// runs the workflow: each saves a server round trip (~30 ms on the dev server), a large share of a
// small model's step. The summary names the phase and step in the Web UI's event history.
const control = (summary: string): Activities => proxyLocalActivities<Activities>({ ...LOCAL_OPTIONS, summary });

// Pinning waits as long as it takes for some policy worker to exist.
const anyPolicyWorker = proxyActivities<Activities>({
  taskQueue: POLICY_QUEUE,
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '10s' },
  summary: 'pin a policy worker',
});

/** Work that needs the run's policy state, on the pinned worker's own queue. */
function pinnedActivities(queue: string, config: RunConfig, summary: string, options: Partial<ActivityOptions> = {}): Activities {
  return proxyActivities<Activities>({
    taskQueue: queue,
    // Only a pinned queue may use scheduleToStart: no poller there means the worker is gone.
    scheduleToStartTimeout: config.orchestration.pinnedStartSeconds * 1000,
    heartbeatTimeout: config.orchestration.heartbeatSeconds * 1000,
    // A long rollout on a big model; liveness is the heartbeat's job, not this.
    startToCloseTimeout: '6 hours',
    // Few attempts: retries go to the same queue, and a dead worker is better replaced than waited for.
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 3 },
    summary,
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
  const total = config.schedule.totalSteps;
  const state: TrainingRunState = input.state
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
      };
  const run = (): RunRef => ({ runId, config, configHash, hyperparameters: state.hyperparameters });
  let phase: TrainingPhase = 'pinning';
  /** The step being computed (its filtering round and checkpoint included); null between steps. */
  let inStep: number | null = null;
  /** Hyper-parameter changes still being written to the run's change log; steps wait for them. */
  let changing = 0;
  let stepsThisExecution = 0;
  let repinsWithoutProgress = 0;
  const stepTimes: number[] = [];

  const currentStep = (): number => state.position?.step ?? 0;
  /** The first step a change made now can still apply to. */
  const nextStep = (): number => (inStep ?? currentStep()) + 1;
  const status = (): RunStatus => (state.stopRequested ? 'stopping' : state.paused ? 'paused' : 'running');
  const stepsPerHour = (): number | null => {
    const span = stepTimes.length >= 2 ? (stepTimes.at(-1)! - stepTimes[0]!) / 3_600_000 : 0;
    return span > 0 ? (stepTimes.length - 1) / span : null;
  };

  /** What the Web UI shows as the run's current details (served by the worker, so only while one is up). */
  function showDetails(): void {
    const last = state.recent.at(-1);
    const lines = [
      `**${status()}** · step **${currentStep()}** of ${total} · phase ${phase}`,
      `last reward ${last ? last.reward.toFixed(4) : '-'} · last loss ${last?.loss?.toFixed(4) ?? '-'} · last checkpoint ${state.lastCheckpoint ?? '-'}`,
      `policy worker ${state.policyQueue ?? '-'} · ${stepsPerHour()?.toFixed(0) ?? '-'} steps/h`,
    ];
    if (state.hyperparameters.length > 0) lines.push(`changes: ${state.hyperparameters.map((c) => `from step ${c.fromStep} ${JSON.stringify({ ...c, fromStep: undefined })}`).join('; ')}`);
    setCurrentDetails(lines.join('\n\n'));
  }
  const setPhase = (p: TrainingPhase): void => {
    phase = p;
    showDetails();
  };
  const publish = (extra: SearchAttributeUpdatePair[] = []): void => {
    upsertSearchAttributes([{ key: searchAttributes.status, value: status() }, { key: searchAttributes.step, value: currentStep() }, ...extra]);
  };

  setHandler(progressQuery, (): TrainingProgress => {
    const rate = stepsPerHour();
    return {
      runId,
      status: status(),
      step: currentStep(),
      totalSteps: total,
      phase,
      paused: state.paused,
      stopping: state.stopRequested,
      lastCheckpoint: state.lastCheckpoint,
      policyWorker: state.policyQueue,
      recent: state.recent,
      stepsPerHour: rate,
      etaSeconds: rate && !state.paused ? ((total - currentStep()) / rate) * 3600 : null,
      hyperparameters: state.hyperparameters,
      nextStepSettings: hyperparametersOf(configAt(config, state.hyperparameters, nextStep())),
      repins: state.repins,
      executions: state.executions,
      stepsCompleted: state.stepsCompleted,
      evaluations: state.evaluations,
      evaluationsStarted: state.evaluationsStarted,
      notes: state.notes,
    };
  });
  setHandler(pauseSignal, () => {
    if (state.paused || state.stopRequested) return;
    state.paused = true;
    publish();
    showDetails();
  });
  setHandler(resumeSignal, () => {
    if (!state.paused) return;
    state.paused = false;
    publish();
    showDetails();
  });
  setHandler(stopSignal, () => {
    if (state.stopRequested) return;
    state.stopRequested = true;
    publish();
    showDetails();
  });
  setHandler(
    setHyperparametersUpdate,
    async (request) => {
      const change = validateHyperparameterRequest(request, config, nextStep());
      state.hyperparameters = [...state.hyperparameters, change];
      changing++;
      try {
        // In the store before the next step starts, so `dro resume` from an older checkpoint replays it.
        await control(`record hyper-parameter change from step ${change.fromStep}`).recordHyperparameters(run(), state.hyperparameters);
      } catch (err) {
        state.hyperparameters = state.hyperparameters.filter((c) => c !== change);
        throw err;
      } finally {
        changing--;
      }
      showDetails();
      return { change, settings: hyperparametersOf(configAt(config, state.hyperparameters, change.fromStep)) };
    },
    {
      // Runs before the update is accepted; a rejection leaves no trace in the history.
      validator: (request) => {
        if (state.stopRequested || phase === 'done' || phase === 'stopped') throw new Error('the run is ending; start it again with `dro resume` to change its settings');
        validateHyperparameterRequest(request, config, nextStep());
      },
    },
  );
  const note = (text: string): void => {
    log.warn(text);
    state.notes = [...state.notes, text].slice(-RECENT);
  };

  /** Pins a policy worker and loads the run's latest valid checkpoint (or a fresh model) there. */
  async function pinAndLoad(): Promise<void> {
    setPhase('pinning');
    const pin = await anyPolicyWorker.pinPolicyWorker();
    setPhase('loading');
    // Loading reads the store, which may be having an outage: more patience than other pinned work.
    const loaded = await pinnedActivities(pin.queue, config, 'load the latest valid checkpoint', { retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 10 } }).loadPolicy(run());
    state.policyQueue = pin.queue;
    for (const s of loaded.skippedInvalid) note(`checkpoint ${s.step} is invalid (${s.reason}); not used`);
    for (const n of loaded.runtimeNotes) note(n);
    if (loaded.checkpoint) {
      const from = loaded.checkpoint.step;
      if (state.highestStep > from) state.replayedSteps += state.highestStep - from;
      state.position = loaded.checkpoint.position;
      state.lastCheckpoint = from;
      log.info(`policy worker ${pin.identity} holds checkpoint ${from}`);
      // A worker lost right after committing this checkpoint never got to start its evaluation.
      await evaluationDue(from);
    } else {
      state.position = null;
      state.lastCheckpoint = null;
    }
  }

  /** The supervised warm start, its filtering round and the base checkpoint (step 0, the KL reference). */
  async function warmStartPhase(queue: string): Promise<void> {
    setPhase('warm-start');
    inStep = 0;
    await pinnedActivities(queue, config, 'warm start').warmStart(run());
    const cursor = await control('initial data cursor').initialCursor(run());
    state.position = { step: 0, cursor, subsetVersion: 0 };
    await afterStep(queue, 0);
    inStep = null;
  }

  async function checkpoint(queue: string, step: number): Promise<void> {
    setPhase('checkpoint');
    await pinnedActivities(queue, config, `checkpoint step ${step}`).saveCheckpoint(run(), state.position!);
    state.lastCheckpoint = step;
  }

  /** What follows step `step` (0 = the base): a filtering round when due, then a checkpoint when due. */
  async function afterStep(queue: string, step: number): Promise<void> {
    const position = state.position!;
    if (filteringDue(config, step)) {
      setPhase('filtering');
      const round = roundAfter(config, step);
      const filtered = await pinnedActivities(queue, config, `filtering round ${round} after step ${step}`).filterData(run(), { step, round, cursor: position.cursor, subsetVersion: position.subsetVersion });
      state.position = { ...position, cursor: filtered.cursor, subsetVersion: filtered.subsetVersion };
    }
    if (checkpointDue(config, step)) {
      await checkpoint(queue, step);
      await evaluationDue(step);
    }
  }

  /** Starts the evaluation of a just-committed checkpoint when the cadence says so; training does not wait. */
  async function evaluationDue(step: number): Promise<void> {
    const every = configAt(config, state.hyperparameters, step).evaluation.every;
    // The final step is evaluated (and waited for) by evaluation.baseAndFinal.
    if (every === 0 || step === 0 || step % every !== 0 || state.evaluationsStarted.includes(step) || (step === total && config.evaluation.baseAndFinal)) return;
    try {
      await startChild(evaluateCheckpoint, {
        workflowId: evaluationWorkflowId(runId, step),
        taskQueue: CONTROL_QUEUE,
        args: [{ runId, store: config.checkpoint.store, step }],
        parentClosePolicy: 'ABANDON',
        staticSummary: `evaluation of step ${step} of run ${runId}`,
      });
    } catch (err) {
      // Started before a rewind or by `dro eval`: that evaluation is the one.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    state.evaluationsStarted = [...state.evaluationsStarted, step].slice(-100);
  }

  /** The before/after evaluations the run reports: a child workflow, waited for. */
  async function evaluate(step: number, label: string): Promise<void> {
    setPhase('evaluation');
    const result: EvaluationOutcome = await executeChild(evaluateCheckpoint, {
      workflowId: evaluationWorkflowId(runId, step),
      taskQueue: CONTROL_QUEUE,
      args: [{ runId, store: config.checkpoint.store, step }],
      staticSummary: `${label} evaluation (step ${step}) of run ${runId}`,
    });
    if (result.step === null) throw ApplicationFailure.create({ type: 'InvalidData', message: result.message, nonRetryable: true });
    state.evaluations = { ...state.evaluations, [label]: { step, ...result.metrics } };
  }

  /** One DRO training step, phase by phase as in the paper. */
  async function trainingStep(queue: string): Promise<void> {
    const position = state.position!;
    const step = position.step + 1;
    const stepConfig = configAt(config, state.hyperparameters, step);
    const pinned = (what: string): Activities => pinnedActivities(queue, stepConfig, `${what} step ${step}`);
    inStep = step;
    setPhase('rollout');
    const batch = await control(`sample batch step ${step}`).sampleBatch(run(), { cursor: position.cursor, subsetVersion: position.subsetVersion });
    const rollout = await pinned('rollout').rollout(run(), { step, exampleIds: batch.exampleIds });
    setPhase('scoring');
    const score = await pinned('score reference').scoreReference(run(), { step });
    setPhase('rewards');
    const reward = await control(`rewards step ${step}`).computeRewards(run(), { step });
    setPhase('update');
    const update = await pinned('GRPO update').update(run(), { step });
    const record: StepRecordInput = { step, rollout, score, reward, update };
    await control(`record metrics step ${step}`).recordStep(run(), record);
    state.position = { step, cursor: batch.cursor, subsetVersion: position.subsetVersion };
    const mean = reward.rewards[config.dro.reward]?.mean ?? 0;
    state.recent = [...state.recent, { step, reward: mean, loss: update.loss, completionTokens: rollout.meanCompletionTokens }].slice(-RECENT);
    state.highestStep = Math.max(state.highestStep, step);
    stepTimes.push(Date.now());
    if (stepTimes.length > RECENT) stepTimes.shift();
    stepsThisExecution++;
    state.stepsCompleted++;
    repinsWithoutProgress = 0;
    publish([{ key: searchAttributes.reward, value: mean }]);
    await afterStep(queue, step);
    inStep = null;
  }

  const result = (status: TrainingRunResult['status']): TrainingRunResult => ({
    runId,
    status,
    steps: currentStep(),
    lastCheckpoint: state.lastCheckpoint!,
    evaluations: state.evaluations,
    repins: state.repins,
    replayedSteps: state.replayedSteps,
    executions: state.executions,
  });

  /** Ends the run on request at the step reached, with a checkpoint there. */
  async function stopHere(queue: string): Promise<TrainingRunResult> {
    if (state.lastCheckpoint !== currentStep()) await checkpoint(queue, currentStep());
    setPhase('stopped');
    upsertSearchAttributes([{ key: searchAttributes.status, value: 'stopped' satisfies RunStatus }]);
    return result('stopped');
  }

  publish();
  try {
    for (;;) {
      try {
        if (state.policyQueue === null) await pinAndLoad();
        const queue = state.policyQueue!;
        if (state.position === null) await warmStartPhase(queue);
        // Also after a rewind: the base may have been committed by an execution that was lost before evaluating it.
        if (config.evaluation.baseAndFinal && !state.evaluations.base && !state.stopRequested) await evaluate(0, 'base');
        while (state.position!.step < total) {
          // Step boundary: changes being recorded land first, then stop, pause and continue-as-new.
          await condition(() => changing === 0);
          if (state.stopRequested) return await stopHere(queue);
          if (state.paused) {
            setPhase('paused');
            stepTimes.length = 0;
            await condition(() => !state.paused || state.stopRequested);
            continue;
          }
          if (stepsThisExecution >= config.orchestration.stepsPerExecution || workflowInfo().continueAsNewSuggested) {
            await condition(allHandlersFinished);
            return await continueAsNew<typeof trainingRun>({ runId, config, configHash, state });
          }
          await trainingStep(queue);
        }
        if (state.stopRequested) return await stopHere(queue);
        if (config.evaluation.baseAndFinal && state.evaluations.final?.step !== total) await evaluate(total, 'final');
        setPhase('done');
        upsertSearchAttributes([{ key: searchAttributes.status, value: 'completed' satisfies RunStatus }]);
        return result('completed');
      } catch (err) {
        if (!policyLost(err)) throw asRunFailure(err);
        inStep = null;
        state.repins++;
        repinsWithoutProgress++;
        note(`policy worker ${state.policyQueue} lost the run's state (${(err as ActivityFailure).activityType}: ${(err as ActivityFailure).cause?.message ?? (err as Error).message}); pinning another and rewinding to the latest checkpoint`);
        if (repinsWithoutProgress > MAX_REPINS_WITHOUT_PROGRESS) {
          throw ApplicationFailure.create({ type: 'PolicyStateLost', message: `the run lost its policy state ${repinsWithoutProgress} times in a row without completing a step; giving up`, nonRetryable: true, cause: err as Error });
        }
        state.policyQueue = null;
      }
    }
  } catch (err) {
    // The workflow's own status says failed; DroStatus says so too for `dro runs` filters.
    if (err instanceof ApplicationFailure) upsertSearchAttributes([{ key: searchAttributes.status, value: 'failed' satisfies RunStatus }]);
    throw err;
  }
}
