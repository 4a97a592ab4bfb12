// A crash loop ends, and a config change gets the run past it: the policy worker SIGKILLs itself in the
// update of step 4 on every attempt (a worker that runs out of memory there would), a keeper restarts it
// each time, and each rewind to checkpoint 2 replays step 3 (in an execution of its own: one step per
// execution) before dying at step 4 again. The run must fail within a bounded time after exactly
// orchestration.maxAttemptsPerStep attempts at step 4, naming the step, the setting and `dro resume`, with
// its checkpoints intact; `dro resume --config` then refuses a change to a field that defines the
// checkpoint and accepts operational and hyper-parameter changes, and the run, on a worker without the
// fault, completes from checkpoint 2 with the new config in force and recorded. Real Temporal (a private
// dev server), real worker processes, a directory store.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultKillLine } from '../activities/faults.js';
import { checkpointState, readChangeLog } from '../activities/records.js';
import { configHash, describeRun, resumeRun, runMetrics, startRun, type Connected, type RunDescription } from '../cli/client.js';
import type { RunConfigInput } from '../dro/config.js';
import { listCheckpoints, loadCheckpoint, loadLatestCheckpoint } from '../storage/checkpoints.js';
import { overlay } from '../scripts/experiment/plan.js';
import { openBlobStore } from '../storage/open.js';
import { trainingWorkflowId } from '../workflows/messages.js';
import { connect, PolicyKeeper, privateServices, QUICK_FAILOVER, tinyRunConfig, tinyRunInput, trainingDeadlineMs, waitFor, WorkerProcess, type PrivateServices } from './training-harness.js';

const RUN_ID = 'crash-loop';
const TOTAL = 4;
const FAULT = 'update@4';
const MAX_ATTEMPTS = 3;
/** Steps 1 to 4 once, then steps 3 and 4 again for each later attempt. */
const FAIL_MS = trainingDeadlineMs(TOTAL + 2 * (MAX_ATTEMPTS - 1));
/** Steps 3 and 4 after the resume. */
const RESUME_MS = trainingDeadlineMs(2);

const DRO = join(import.meta.dirname, '..', 'bin', 'dro');

const RUN: RunConfigInput = {
  seed: 11,
  rollout: { groupSize: 4, maxNewTokens: 24, batchSequences: 8 },
  optimizer: { learningRate: 1e-4 },
  schedule: { totalSteps: TOTAL },
  checkpoint: { every: 2, keepLast: 2 },
  filtering: { enabled: false },
  evaluation: { baseAndFinal: false },
  // One step per execution: the attempts at step 4 are counted across continue-as-new.
  orchestration: { stepsPerExecution: 1, maxAttemptsPerStep: MAX_ATTEMPTS, ...QUICK_FAILOVER },
};
/** The resume's allowed changes: the batch plan's chunk size, an orchestration setting and a hyper-parameter. */
const changedRun = overlay(RUN, { rollout: { batchSequences: 4 }, optimizer: { learningRate: 2e-4 }, orchestration: { maxAttemptsPerStep: 5 } });

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let dir: string;
let store: string;
let faulty: PolicyKeeper | undefined;
let healthy: PolicyKeeper | undefined;

beforeAll(async () => {
  services = await privateServices('crash-loop', ['temporal']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  control = await WorkerProcess.start('control', services.env);
  dir = await mkdtemp(join(tmpdir(), 'dro-crash-loop-'));
  store = join(dir, 'store');
}, 300_000);

afterAll(async () => {
  await faulty?.stop();
  await healthy?.stop();
  await control?.kill('SIGTERM');
  await c?.close();
  await services?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

/** The run's description once its workflow has ended (failed, completed or otherwise), else undefined. */
const ended = async (runId: string): Promise<RunDescription | undefined> => {
  const d = await describeRun(c, runId);
  return d.state === 'running' ? undefined : d;
};

const killedByFault = (keeper: PolicyKeeper): WorkerProcess[] => keeper.all.filter((w) => w.child.signalCode === 'SIGKILL' && w.output.includes(faultKillLine(FAULT)));

describe.sequential('a crash loop at one step', () => {
  it('ends the run failed after orchestration.maxAttemptsPerStep attempts at the step, within a bounded time, naming the step and `dro resume`, checkpoints intact', async () => {
    faulty = await PolicyKeeper.start({ ...services.env, DRO_FAULT: FAULT });
    const keeper = faulty;
    const { handle } = await startRun(c, tinyRunConfig(store, RUN), RUN_ID);
    const described = await waitFor('the crash-looping run to end', () => ended(RUN_ID), FAIL_MS, {
      context: () => `policy workers started: ${keeper.all.length}, killed at ${FAULT}: ${killedByFault(keeper).length}`,
    });
    expect(described.state).toBe('failed');
    const failure = await handle.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const cause = (failure as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('PolicyStateLost');
    const message = /^step 4 failed 3 times \(orchestration\.maxAttemptsPerStep\); the last failure: update: .*fix the cause and continue with `dro resume --run crash-loop`$/s;
    expect(cause!.message).toMatch(message);
    // What `dro status` shows is the run's own failure, not the heartbeat timeout under it.
    expect(described.status).toBe('failed');
    expect(described.failure).toMatch(message);

    // One worker killed at the fault per attempt, each a process of its own; nothing else killed a worker.
    const killed = killedByFault(keeper);
    expect(killed).toHaveLength(MAX_ATTEMPTS);
    expect(new Set(killed.map((w) => w.pid)).size).toBe(MAX_ATTEMPTS);
    expect(keeper.all.filter((w) => w.child.signalCode === 'SIGKILL')).toHaveLength(MAX_ATTEMPTS);

    // Steps 1 to 3 an execution each, then each attempt at step 4 in an execution of its own (after the
    // replayed step 3, continue-as-new): the count went across executions. Visibility lags a little: a start's bound.
    const executions = await waitFor(
      'the run’s executions in visibility',
      async () => {
        let n = 0;
        for await (const _ of c.client.workflow.list({ query: `WorkflowId = '${trainingWorkflowId(RUN_ID)}'` })) n++;
        return n >= TOTAL - 1 + MAX_ATTEMPTS ? n : undefined;
      },
      trainingDeadlineMs(0),
    );
    expect(executions).toBe(TOTAL - 1 + MAX_ATTEMPTS);

    // The checkpoints written before are listed and valid; step 3 was replayed, step 4 never completed.
    const s = await openBlobStore(store);
    expect((await listCheckpoints(s, RUN_ID)).map((l) => ({ step: l.step, valid: l.valid }))).toEqual([
      { step: 0, valid: true },
      { step: 2, valid: true },
    ]);
    const latest = await loadLatestCheckpoint(s, RUN_ID);
    expect(latest.skipped).toEqual([]);
    expect(latest.checkpoint?.ref.step).toBe(2);
    expect((await runMetrics(store, RUN_ID)).map((m) => m.step)).toEqual([1, 2, 3]);
  }, FAIL_MS + 120_000);

  it('`dro resume --config` refuses a change to a field that defines the checkpoint, naming it, and starts nothing', async () => {
    const refused = join(dir, 'refused.json');
    await writeFile(refused, JSON.stringify(tinyRunInput(store, overlay(changedRun, { seed: 12, rollout: { groupSize: 2 } }))));
    const r = spawnSync(DRO, ['resume', '--run', RUN_ID, '--config', refused], { encoding: 'utf8', env: { ...process.env, ...services.env } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^dro: ${refused.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} differs from checkpoint 2's config: a resume cannot change rollout\\.groupSize, seed \\(`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await describeRun(c, RUN_ID)).toMatchObject({ state: 'failed' });
  });

  it('resumed with a changed batch plan, orchestration and learning rate on a worker without the fault, it completes from checkpoint 2 with the new config in force and recorded', async () => {
    await faulty!.stop();
    healthy = await PolicyKeeper.start(services.env);
    const changed = join(dir, 'changed.json');
    await writeFile(changed, JSON.stringify(tinyRunInput(store, changedRun)));
    const said: string[] = [];
    const outcome = await resumeRun(c, RUN_ID, { configFile: changed, log: (line) => said.push(line) });
    expect(outcome).toMatchObject({ action: 'resumed', from: 2 });
    expect(said).toEqual(['changing from step 3: optimizer.learningRate 0.0001 → 0.0002, orchestration.maxAttemptsPerStep 3 → 5, rollout.batchSequences 8 → 4']);
    expect((await waitFor('the resumed run to end', () => ended(RUN_ID), RESUME_MS)).state).toBe('completed');
    const result = await outcome.handle!.result();
    expect(result).toMatchObject({ status: 'completed', steps: TOTAL, lastCheckpoint: TOTAL, repins: 0 });
    expect(healthy.restarts).toBe(0);

    const s = await openBlobStore(store);
    const before = checkpointState(await loadCheckpoint(s, RUN_ID, 2));
    const after = checkpointState(await loadCheckpoint(s, RUN_ID, TOTAL));
    // Checkpoint 2 is as the failed run wrote it; checkpoint 4 carries the new config, its hash and the change.
    const original = tinyRunConfig(store, RUN);
    expect(before.configHash).toBe(configHash(original));
    expect(before.configChanges).toBeUndefined();
    expect(after.config).toEqual({ ...original, rollout: { ...original.rollout, batchSequences: 4 }, orchestration: { ...original.orchestration, maxAttemptsPerStep: 5 } });
    expect(after.configHash).toBe(configHash(after.config));
    expect(after.hyperparameters).toEqual([{ fromStep: 3, learningRate: 2e-4 }]);
    const change = {
      fromStep: 3,
      fields: {
        'optimizer.learningRate': { before: 1e-4, after: 2e-4 },
        'orchestration.maxAttemptsPerStep': { before: 3, after: 5 },
        'rollout.batchSequences': { before: 8, after: 4 },
      },
    };
    expect(after.configChanges).toEqual([change]);
    expect(await readChangeLog(s, RUN_ID)).toEqual({ runId: RUN_ID, changes: [{ fromStep: 3, learningRate: 2e-4 }], configChanges: [change] });
    // Steps 3 and 4 trained with the new learning rate (constant schedule), steps 1 and 2 kept theirs.
    expect((await runMetrics(store, RUN_ID)).map((m) => [m.step, m.learningRate])).toEqual([
      [1, 1e-4],
      [2, 1e-4],
      [3, 2e-4],
      [4, 2e-4],
    ]);
    expect((await listCheckpoints(s, RUN_ID)).every((l) => l.valid)).toBe(true);
    expect(await c.client.workflow.getHandle(trainingWorkflowId(RUN_ID)).describe()).toMatchObject({ status: { name: 'COMPLETED' } });
  }, RESUME_MS + 120_000);

  it('a policy worker whose --memory cannot hold a run refuses it when it loads, naming the phase, the estimate and the fields; the worker lives on', async () => {
    await faulty?.stop();
    await healthy?.stop();
    // 0.2 GiB is less than a process's own footprint, so every phase of any run is over it.
    const small = await WorkerProcess.start('policy', services.env, ['--memory', '0.2']);
    try {
      const runId = 'over-budget';
      const { handle } = await startRun(c, tinyRunConfig(store, RUN), runId);
      const described = await waitFor('the over-budget run to end', () => ended(runId), trainingDeadlineMs(1));
      expect(described.state).toBe('failed');
      const failure = await handle.result().then(
        () => undefined,
        (err: unknown) => err,
      );
      const cause = (failure as WorkflowFailedError).cause as ApplicationFailure;
      expect(cause.type).toBe('InsufficientMemory');
      expect(cause.message).toMatch(/^run over-budget: its (rollout|scoring|update) needs about \d+\.\d GiB \(process 0\.3 GiB, .*\) for .*, more than this policy worker's memory budget of 0\.2 GiB \(dro worker --memory\); lower .*, or give the worker more memory$/);
      expect(described.failure).toBe(cause.message);
      // Refused, not killed: the same worker process still runs.
      expect(small.child.exitCode).toBeNull();
      expect((await listCheckpoints(await openBlobStore(store), runId)).length).toBe(0);
    } finally {
      await small.kill('SIGTERM');
    }
  }, trainingDeadlineMs(1) + 60_000);
});
