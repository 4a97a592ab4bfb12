// The workflow tier: trainingRun on a private dev server with typed mock activities (testing/fleet.ts),
// covering in seconds what the real-server scenarios cover in minutes: a lost policy state re-pins and
// rewinds to the last checkpoint, stop while paused, continue-as-new carrying accepted changes, and the
// crash loop that ends after orchestration.maxAttemptsPerStep attempts at one step.
import { WorkflowFailedError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../dro/config.js';
import { waitFor } from '../test/training-harness.js';
import { CONTROL_QUEUE, pauseSignal, PHASES, progressQuery, searchAttributes, setHyperparametersUpdate, stopSignal, trainingWorkflowId, type TrainingProgress, UNITS_QUEUE } from './messages.js';
import { bundleWorkflows, Fleet, replays, startEnvironment } from './testing/fleet.js';
import type { trainingRun } from './training-run.js';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([startEnvironment(), bundleWorkflows()]);
}, 60_000);
afterAll(async () => {
  await env?.teardown();
});

/** A run config: the mocks read only the schedule, cadences, orchestration and a few sizes. */
function config(overrides: RunConfigInput): RunConfig {
  return parseRunConfig({ seed: 5, rollout: { promptsPerStep: 2 }, checkpoint: { store: 'unused', every: 4 }, filtering: { enabled: false }, evaluation: { baseAndFinal: false }, ...overrides });
}

function start(runId: string, cfg: RunConfig): Promise<WorkflowHandleWithFirstExecutionRunId<typeof trainingRun>> {
  return env.client.workflow.start<typeof trainingRun>('trainingRun', { taskQueue: CONTROL_QUEUE, workflowId: trainingWorkflowId(runId), args: [{ runId, config: cfg, configHash: `hash-${runId}` }] });
}

/** The progress query of the run's current execution, polled until `ok` holds. */
function progressReaches(runId: string, what: string, ok: (p: TrainingProgress) => boolean): Promise<TrainingProgress> {
  const handle = env.client.workflow.getHandle(trainingWorkflowId(runId));
  return waitFor(`run ${runId}: ${what}`, async () => {
    const p = await handle.query(progressQuery);
    return ok(p) ? p : undefined;
  }, 10_000, { everyMs: 20 });
}

const steps = (fleet: Fleet): number[] => fleet.records.map((r) => r.step);

/** The activity summaries of the handle's execution, in the order scheduled (the Web UI's event history). */
async function summaries(handle: WorkflowHandle): Promise<string[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  return events.flatMap((e) => {
    const data = e.userMetadata?.summary?.data;
    return data && (e.activityTaskScheduledEventAttributes || e.markerRecordedEventAttributes) ? [JSON.parse(Buffer.from(data).toString('utf8')) as string] : [];
  });
}

// One at a time: every test's workers poll the workflow's own queue constants on the shared server.
describe.sequential('trainingRun on mock activities', () => {
  it('a lost policy state re-pins another worker, rewinds to the last checkpoint and replays from it', async () => {
    const fleet = new Fleet('rewind');
    fleet.loseStateAt('update', 7);
    const cfg = config({ schedule: { totalSteps: 8 }, filtering: { enabled: true, every: 4 }, evaluation: { every: 4, baseAndFinal: true } });
    await fleet.serve(env, bundle, async () => {
      const handle = await start('rewind', cfg);
      const result = await handle.result();
      expect(result).toMatchObject({ status: 'completed', steps: 8, lastCheckpoint: 8, repins: 1, replayedSteps: 2, executions: 1 });
      // Steps 5 and 6 ran again from checkpoint 4, on the second worker, with the same batches: the
      // position (cursor and filtered subset) came back from the checkpoint.
      expect(steps(fleet)).toEqual([1, 2, 3, 4, 5, 6, 5, 6, 7, 8]);
      expect(fleet.records[6]!.exampleIds).toEqual(fleet.records[4]!.exampleIds);
      expect(fleet.records[7]!.exampleIds).toEqual(fleet.records[5]!.exampleIds);
      expect(fleet.records[4]!.exampleIds[0]).toMatch(/^v2-/);
      expect(fleet.pins).toEqual(['rewind-policy-0', 'rewind-policy-1']);
      expect(fleet.callsOf('update').filter((c) => c.step === 7).map((c) => c.queue)).toEqual(['rewind-policy-0', 'rewind-policy-1']);
      // Each pin publishes the state it loaded (or made) once; the updates publish the rest.
      expect(fleet.callsOf('publishPolicyVersion').map((c) => `${c.step} ${c.queue}`)).toEqual(['0 rewind-policy-0', '4 rewind-policy-1']);
      // The units go to the queue every policy worker polls, whichever worker is pinned.
      const units = fleet.callsOf('rolloutUnit').filter((c) => c.step! >= 5);
      expect(units.map((c) => c.step)).toEqual([5, 6, 7, 5, 6, 7, 8]);
      expect(new Set(units.map((c) => c.queue))).toEqual(new Set([UNITS_QUEUE]));
      expect([...fleet.checkpoints.keys()]).toEqual([0, 4, 8]);
      expect(result.evaluations).toMatchObject({ base: { step: 0 }, final: { step: 8 } });
      const p = await handle.query(progressQuery);
      expect(p).toMatchObject({ repins: 1, stepsCompleted: 10, policyWorker: 'rewind-policy-1', evaluationsStarted: [4] });
      expect(p.notes.join('\n')).toMatch(/policy worker rewind-policy-0 lost the run's state \(update: .*\); pinning another and rewinding/);
      await waitFor('the evaluation of step 4', () => Promise.resolve(fleet.evaluated.includes(4) ? true : undefined), 10_000, { everyMs: 20 });
      await replays(handle, bundle);
    });
  });

  it('stop while paused ends the run with a checkpoint at the step reached, as stopped', async () => {
    const fleet = new Fleet('stop');
    const third = fleet.hold('rolloutUnit', 3);
    await fleet.serve(env, bundle, async () => {
      const handle = await start('stop', config({ schedule: { totalSteps: 8 } }));
      await third.reached;
      expect(await handle.query(progressQuery)).toMatchObject({ step: 2, phase: 'rollout' });
      await handle.signal(pauseSignal);
      third.release();
      const paused = await progressReaches('stop', 'paused after step 3', (p) => p.phase === 'paused');
      expect(paused).toMatchObject({ status: 'paused', step: 3, paused: true, lastCheckpoint: 0 });
      expect((await handle.describe()).typedSearchAttributes.get(searchAttributes.status)).toBe('paused');
      await handle.signal(stopSignal);
      const result = await handle.result();
      expect(result).toMatchObject({ status: 'stopped', steps: 3, lastCheckpoint: 3, repins: 0 });
      expect([...fleet.checkpoints.keys()]).toEqual([0, 3]);
      expect(fleet.checkpoints.get(3)!.step).toBe(3);
      // Nothing ran after the pause: no step 4.
      expect(steps(fleet)).toEqual([1, 2, 3]);
      expect(fleet.calls.filter((c) => c.step === 4)).toEqual([]);
      expect((await handle.describe()).typedSearchAttributes.get(searchAttributes.status)).toBe('stopped');
      expect((await handle.query(progressQuery)).phase).toBe('stopped');
      // One vocabulary: a step's activities are summarised by their phases, in the paper's order, and
      // the step record's fields are phases too.
      const named = await summaries(handle);
      expect(named.filter((s) => / step 2\b/.test(s))).toEqual([
        'sample step 2',
        'rollout step 2 · unit 1/1',
        'rollout step 2 · combine',
        'score step 2 · unit 1/1',
        'score step 2 · combine',
        'reward step 2',
        'update step 2',
        'record step 2',
      ]);
      expect(named.filter((s) => !(PHASES as readonly string[]).includes(s.split(' ')[0]!))).toEqual(['initial data cursor', 'release the policy worker']);
      expect(fleet.records[0]!.fields).toEqual(['step', 'rollout', 'score', 'reward', 'update']);
      expect(fleet.records[0]!.fields.slice(1).every((f) => (PHASES as readonly string[]).includes(f))).toBe(true);
      await replays(handle, bundle);
    });
  });

  it('continue-as-new carries the accepted hyper-parameter changes into the next executions', async () => {
    const fleet = new Fleet('carry');
    const first = fleet.hold('rolloutUnit', 1);
    const fourth = fleet.hold('rolloutUnit', 4);
    const cfg = config({ optimizer: { learningRate: 1e-4 }, schedule: { totalSteps: 6 }, checkpoint: { store: 'unused', every: 2 }, orchestration: { stepsPerExecution: 2 } });
    await fleet.serve(env, bundle, async () => {
      const handle = await start('carry', cfg);
      await first.reached;
      // During step 1: applies from the next step, 2.
      const a = await handle.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: 2e-4 }] });
      expect(a.change).toEqual({ fromStep: 2, learningRate: 2e-4 });
      first.release();
      await fourth.reached;
      // In the second execution (steps 3-4), for a later step.
      const current = env.client.workflow.getHandle(handle.workflowId);
      expect((await current.describe()).runId).not.toBe(handle.firstExecutionRunId);
      const b = await current.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: 3e-4, fromStep: 6 }] });
      expect(b.settings.learningRate).toBe(3e-4);
      fourth.release();
      const result = await handle.result();
      expect(result).toMatchObject({ status: 'completed', steps: 6, executions: 3, repins: 0 });
      expect(fleet.records.map((r) => [r.step, r.learningRate])).toEqual([
        [1, 1e-4],
        [2, 2e-4],
        [3, 2e-4],
        [4, 2e-4],
        [5, 2e-4],
        [6, 3e-4],
      ]);
      const changes = [
        { fromStep: 2, learningRate: 2e-4 },
        { fromStep: 6, learningRate: 3e-4 },
      ];
      expect(fleet.changeLog).toEqual(changes);
      // The third execution's activities got both changes from the carried state.
      expect(fleet.callsOf('update').find((c) => c.step === 5)!.hyperparameters).toEqual(changes);
      const p = await current.query(progressQuery);
      expect(p).toMatchObject({ executions: 3, hyperparameters: changes, phase: 'done' });
      await replays(current, bundle);
    });
  });

  it('names the workers that computed units, says once when a unit ran on another runtime fingerprint, and when one was stored with other bytes', async () => {
    const fleet = new Fleet('fingerprints');
    // From step 3 on, rollout units come from a worker of another kind; step 4's first scoring unit met other bytes stored.
    fleet.shapeUnit = (u, step, activity) => {
      if (activity === 'rolloutUnit' && step >= 3) return { ...u, worker: 'avx2-box', fingerprint: 'x64 avx+fma+f16c+avx2 · ONNX Runtime 1.30.0 · 2 threads · cpu' };
      if (activity === 'scoreUnit' && step === 4) return { ...u, stored: 'conflict' };
      if (activity === 'scoreUnit' && step === 2) return { ...u, stored: 'found', worker: 'not-counted' };
      return u;
    };
    await fleet.serve(env, bundle, async () => {
      const handle = await start('fingerprints', config({ schedule: { totalSteps: 5 } }));
      await handle.result();
      const p = await handle.query(progressQuery);
      const mixed = p.notes.filter((n) => /runtime fingerprint/.test(n));
      expect(mixed).toEqual([
        'step 3: rollout unit 0 ran on avx2-box, whose runtime fingerprint (x64 avx+fma+f16c+avx2 · ONNX Runtime 1.30.0 · 2 threads · cpu) differs from that of earlier units (toy): results may differ in the last bits from a run on one kind of machine (README, "One run on many machines")',
      ]);
      expect(p.notes.filter((n) => /other bytes/.test(n))).toEqual(['step 4: scoring unit 0 was computed again by units (toy) with other bytes than those stored first, which were kept']);
      // Most recent first; a result found stored counts for nobody.
      expect(p.workers!.map((w) => [w.worker, w.lastStep])).toEqual([
        ['units', 5],
        ['avx2-box', 5],
      ]);
      await replays(handle, bundle);
    });
  });

  it('ends a crash loop: a worker that dies at the same step after every rewind fails the run after orchestration.maxAttemptsPerStep attempts', async () => {
    const fleet = new Fleet('give-up');
    // Checkpoint 0 only before step 3: each rewind replays steps 1 and 2 (which complete) and dies at 3 again.
    fleet.loseStateAt('update', 3, Infinity);
    await fleet.serve(env, bundle, async () => {
      const handle = await start('give-up', config({ schedule: { totalSteps: 4 } }));
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const cause = (err as WorkflowFailedError).cause;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect((cause as ApplicationFailure).type).toBe('PolicyStateLost');
      expect(cause!.message).toMatch(/^step 3 failed 3 times \(orchestration\.maxAttemptsPerStep\); the last failure: update: .*dro resume --run give-up/);
      // The first pin and 2 re-pins, each loading checkpoint 0, replaying steps 1 and 2 and failing step 3's update.
      expect(fleet.pins).toHaveLength(3);
      expect(fleet.callsOf('loadPolicy')).toHaveLength(3);
      expect(fleet.callsOf('update').map((c) => c.step)).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3]);
      expect(fleet.callsOf('warmStart')).toHaveLength(1);
      expect((await handle.describe()).typedSearchAttributes.get(searchAttributes.status)).toBe('failed');
      await replays(handle, bundle);
    });
  });
});
