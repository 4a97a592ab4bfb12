// The workflow test tier's fixtures: a private Temporal dev server (TestWorkflowEnvironment on the local
// `temporal` binary), the workflow bundle built once, and a simulated fleet of policy workers whose
// activities are typed mocks of `Activities`. The mocks keep a toy policy state (the step a worker
// holds) and a toy store (checkpoints, the change log), so a test can make a worker lose its state at a
// chosen activity and step and watch the workflow re-pin, rewind and replay, in seconds.
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { failure } from '../../activities/errors.js';
import type { Activities } from '../../activities/index.js';
import type { LoopPosition, PublishedPolicy, RunRef, StepRecordInput, UnitSummary } from '../../activities/types.js';
import { configAt, type HyperparameterChange } from '../../dro/hyperparameters.js';
import { CONTROL_QUEUE, EVALUATION_QUEUE, POLICY_QUEUE, searchAttributes, UNITS_QUEUE } from '../messages.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** A dev server of this test file alone, on a free port, with the run's search attributes registered. */
export async function startEnvironment(): Promise<TestWorkflowEnvironment> {
  // Workers log every activity retry at INFO; the tests read what they need from the fleet's log.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  return TestWorkflowEnvironment.createLocal({
    server: {
      // Temporal's own test server (createTimeSkipping) is downloaded on first use, which this network
      // cannot do; the dev server binary is already in .tools. No scenario here waits on a timer.
      executable: { type: 'existing-path', path: join(ROOT, '.tools', 'venv', 'bin', 'temporal') },
      searchAttributes: Object.values(searchAttributes),
      log: { format: 'pretty', level: 'error' },
    },
  });
}

/** The control worker's workflows, bundled once per test file (the bundle is most of a worker's start). */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: join(ROOT, 'workflows', 'index.ts'), logger: new DefaultLogger('WARN') });
}

export type ActivityName = keyof Activities;

/** One activity call as the fleet saw it. */
export interface Call {
  activity: ActivityName;
  /** The task queue it ran on: a pinned worker's own queue for policy work. */
  queue: string;
  step?: number;
  /** The change log the workflow passed in its RunRef. */
  hyperparameters?: HyperparameterChange[];
}

/** Holds one activity at one step until the test releases it, so a message lands at a known point. */
export interface Gate {
  reached: Promise<void>;
  release(): void;
}

/** A step's record as `recordStep` received it, with what the toy activities derived. */
export interface Recorded {
  step: number;
  /** The step record's field names, as the workflow built it. */
  fields: string[];
  exampleIds: string[];
  learningRate: number;
}

/** The toy store's policy version of a step. */
const versionOf = (step: number): PublishedPolicy => ({ step, sha256: `version-${step}`, bytes: 0, base: null });

/** A unit as the units queue's one toy worker computes it. */
const unitDone = (unit: number): UnitSummary => ({ unit, sequences: 0, tokens: 0, worker: 'units', fingerprint: 'toy', stored: 'new', seconds: 0, loadSeconds: 0 });

/** What a test makes of a training unit's summary (its worker, fingerprint, how it was stored). */
export type UnitShaper = (unit: UnitSummary, step: number, activity: 'rolloutUnit' | 'scoreUnit') => UnitSummary;

/** A toy filtering round: the next subset version, its cursor at the start. */
function filtered(input: { round: number; cursor: LoopPosition['cursor']; subsetVersion: number }) {
  const subsetVersion = input.subsetVersion + 1;
  return { round: input.round, subsetVersion, cursor: { ...input.cursor, subsetVersion, position: 0 }, candidates: 0, kept: 0, droppedTooHard: 0, droppedTooEasy: 0, carriedOver: 0, generatedTokens: 0, seconds: 0 };
}

/**
 * Policy workers `name-policy-0..workers-1`, pinned in turn, plus the shared policy, evaluation, units and
 * control queues; one mock of every activity serves them all and tells the workers apart by the task
 * queue the call arrived on.
 */
export class Fleet {
  readonly queues: string[];
  readonly calls: Call[] = [];
  readonly pins: string[] = [];
  readonly records: Recorded[] = [];
  /** The toy store: committed checkpoints by step, the change log, the evaluations run. */
  readonly checkpoints = new Map<number, LoopPosition>();
  changeLog: HyperparameterChange[] = [];
  readonly evaluated: number[] = [];
  /** Set by a test to vary the units' workers and fingerprints. */
  shapeUnit: UnitShaper = (u) => u;
  /** The training step whose state each worker holds (-1 fresh, 0 the base); absent: none. */
  private readonly held = new Map<string, number>();
  private readonly losses: { activity: ActivityName; step: number; times: number }[] = [];
  private readonly gates: { activity: ActivityName; step: number; arrive: () => void; open: Promise<void> }[] = [];
  private readonly batches = new Map<number, string[]>();

  constructor(
    readonly name: string,
    workers = 2,
  ) {
    this.queues = Array.from({ length: workers }, (_, i) => `${name}-policy-${i}`);
  }

  /** The worker running `activity` at `step` loses the run's state, `times` times (each later attempt too). */
  loseStateAt(activity: ActivityName, step: number, times = 1): void {
    this.losses.push({ activity, step, times });
  }

  /** `activity` at `step` waits for `release()`; `reached` resolves when it is waiting. */
  hold(activity: ActivityName, step: number): Gate {
    let arrive!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((r) => (arrive = r));
    const open = new Promise<void>((r) => (release = r));
    this.gates.push({ activity, step, arrive, open });
    return { reached, release };
  }

  /** Calls of `activity`, in order. */
  callsOf(activity: ActivityName): Call[] {
    return this.calls.filter((c) => c.activity === activity);
  }

  private async enter(activity: ActivityName, run: RunRef | undefined, step?: number): Promise<string> {
    const queue = Context.current().info.taskQueue;
    this.calls.push({ activity, queue, step, hyperparameters: run?.hyperparameters });
    for (const g of this.gates.filter((g) => g.activity === activity && g.step === step)) {
      g.arrive();
      await g.open;
    }
    return queue;
  }

  /** Like the real policy host: the worker must hold exactly the state the step builds on. */
  private require(queue: string, activity: ActivityName, step: number, holds: number): void {
    const loss = this.losses.find((l) => l.activity === activity && l.step === step && l.times > 0);
    if (loss) {
      loss.times--;
      this.held.delete(queue);
    }
    if (this.held.get(queue) !== holds) throw failure('PolicyStateLost', `policy worker ${queue} does not hold step ${holds} (${activity} of step ${step})`);
  }

  readonly activities: Activities = {
    pinPolicyWorker: async () => {
      await this.enter('pinPolicyWorker', undefined);
      const queue = this.queues[this.pins.length % this.queues.length]!;
      this.pins.push(queue);
      return { queue, identity: queue };
    },
    loadPolicy: async (run) => {
      const queue = await this.enter('loadPolicy', run);
      const latest = Math.max(-1, ...this.checkpoints.keys());
      this.held.set(queue, latest);
      return { checkpoint: latest < 0 ? null : { step: latest, position: this.checkpoints.get(latest)! }, skippedInvalid: [], runtimeNotes: [] };
    },
    warmStart: async (run) => {
      const queue = await this.enter('warmStart', run, 0);
      this.require(queue, 'warmStart', 0, -1);
      this.held.set(queue, 0);
      return { steps: 0, finalLoss: null, tokens: 0, seconds: 0 };
    },
    initialCursor: async (run) => {
      await this.enter('initialCursor', run);
      return { subsetVersion: 0, epoch: 0, position: 0, seed: run.config.seed };
    },
    sampleBatch: async (run, input) => {
      await this.enter('sampleBatch', run);
      const n = run.config.rollout.promptsPerStep;
      const exampleIds = Array.from({ length: n }, (_, i) => `v${input.subsetVersion}-${input.cursor.position + i}`);
      return { exampleIds, cursor: { ...input.cursor, position: input.cursor.position + n } };
    },
    rollout: async (run, input) => {
      const queue = await this.enter('rollout', run, input.step);
      this.require(queue, 'rollout', input.step, input.step - 1);
      this.batches.set(input.step, input.exampleIds);
      return { sequences: input.exampleIds.length, generatedTokens: 0, meanCompletionTokens: input.step, truncatedShare: 0, malformedShare: 0, seconds: 0 };
    },
    publishPolicyVersion: async (run, input) => {
      const queue = await this.enter('publishPolicyVersion', run, input.step);
      this.require(queue, 'publishPolicyVersion', input.step, input.step);
      return versionOf(input.step);
    },
    rolloutUnit: async (run, input) => {
      await this.enter('rolloutUnit', run, input.step);
      if ('exampleIds' in input) this.batches.set(input.step, input.exampleIds);
      return this.shapeUnit(unitDone(input.unit), input.step, 'rolloutUnit');
    },
    scoreUnit: async (run, input) => {
      await this.enter('scoreUnit', run, input.step);
      return this.shapeUnit(unitDone(input.unit), input.step, 'scoreUnit');
    },
    combineRollout: async (run, input) => {
      await this.enter('combineRollout', run, input.step);
      return { sequences: 'exampleIds' in input ? input.exampleIds.length : 0, generatedTokens: 0, meanCompletionTokens: input.step, truncatedShare: 0, malformedShare: 0, seconds: 0 };
    },
    combineScores: async (run, input) => {
      await this.enter('combineScores', run, input.step);
      return { sequences: 0, scoredTokens: 0, seconds: 0 };
    },
    scoreReference: async (run, input) => {
      const queue = await this.enter('scoreReference', run, input.step);
      this.require(queue, 'scoreReference', input.step, input.step - 1);
      return { sequences: 0, scoredTokens: 0, seconds: 0 };
    },
    computeRewards: async (run, input) => {
      await this.enter('computeRewards', run, input.step);
      return { rewards: { [run.config.dro.reward]: { mean: input.step / 100, std: 0 } }, tokenWeights: { meanStd: 0, maxStd: 0, topDecileWeightShare: 0 }, groups: 0, skippedGroups: 0, seconds: 0 };
    },
    update: async (run, input) => {
      const queue = await this.enter('update', run, input.step);
      this.require(queue, 'update', input.step, input.step - 1);
      this.held.set(queue, input.step);
      const learningRate = configAt(run.config, run.hyperparameters, input.step).optimizer.learningRate;
      return { applied: true, loss: 1 / input.step, gradNorm: null, kl: null, clipFraction: null, learningRate, trainedTokens: 0, scoredTokens: 0, seconds: 0, scoreSeconds: 0, policy: versionOf(input.step) };
    },
    recordStep: async (run, input: StepRecordInput) => {
      await this.enter('recordStep', run, input.step);
      this.records.push({ step: input.step, fields: Object.keys(input), exampleIds: this.batches.get(input.step) ?? [], learningRate: input.update.learningRate });
    },
    recordHyperparameters: async (run, changes) => {
      await this.enter('recordHyperparameters', run);
      this.changeLog = changes;
    },
    saveCheckpoint: async (run, position) => {
      const queue = await this.enter('saveCheckpoint', run, position.step);
      this.require(queue, 'saveCheckpoint', position.step, position.step);
      this.checkpoints.set(position.step, position);
      return { step: position.step, bytes: 0, deleted: [], seconds: 0 };
    },
    filterData: async (run, input) => {
      const queue = await this.enter('filterData', run, input.step);
      this.require(queue, 'filterData', input.step, input.step);
      return filtered(input);
    },
    filterRoundSize: async (run, input) => {
      await this.enter('filterRoundSize', run, input.step);
      return 4;
    },
    decideFilterRound: async (run, input) => {
      await this.enter('decideFilterRound', run, input.step);
      return filtered(input);
    },
    releasePolicy: async (run) => {
      const queue = await this.enter('releasePolicy', run);
      this.held.delete(queue);
    },
    planEvaluation: async (input) => {
      await this.enter('planEvaluation', undefined, input.step ?? undefined);
      const step = input.step ?? Math.max(...this.checkpoints.keys());
      return { step, policy: versionOf(step), units: 2 };
    },
    evaluationUnit: async (input) => {
      await this.enter('evaluationUnit', undefined, input.policy.step);
      return unitDone(input.unit);
    },
    combineEvaluation: async (input) => {
      const step = input.policy.step;
      await this.enter('combineEvaluation', undefined, step);
      this.evaluated.push(step);
      return { step, metrics: { accuracy: step / 100 }, examples: 0, cached: false, seconds: 0 };
    },
    runEvaluation: async (input) => {
      await this.enter('runEvaluation', undefined, input.step ?? undefined);
      const step = input.step ?? Math.max(...this.checkpoints.keys());
      this.evaluated.push(step);
      return { step, metrics: { accuracy: step / 100 }, examples: 0, cached: false, seconds: 0 };
    },
  };

  /**
   * Runs `body` while a control worker (the workflows and their local activities) and every policy
   * queue's worker poll `env`; shuts them down after. Tests run one at a time: the shared queues
   * (control, pinning, evaluation) are the workflow's constants.
   */
  async serve<T>(env: TestWorkflowEnvironment, bundle: WorkflowBundleWithSourceMap, body: () => Promise<T>): Promise<T> {
    const connection = env.nativeConnection;
    const workers = await Promise.all([
      Worker.create({ connection, taskQueue: CONTROL_QUEUE, workflowBundle: bundle, activities: this.activities }),
      ...[POLICY_QUEUE, EVALUATION_QUEUE, UNITS_QUEUE, ...this.queues].map((taskQueue) => Worker.create({ connection, taskQueue, activities: this.activities })),
    ]);
    const done = body();
    const runs = workers.map((w) => w.runUntil(done.catch(() => undefined)));
    const [result] = await Promise.all([done, ...runs]);
    return result;
  }
}

/** The history of the handle's current execution replays on the bundle without nondeterminism. */
export async function replays(handle: WorkflowHandle, bundle: WorkflowBundleWithSourceMap): Promise<void> {
  await Worker.runReplayHistory({ workflowBundle: bundle }, await handle.fetchHistory(), handle.workflowId);
}
