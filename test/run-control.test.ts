// Operating a run, on a private Temporal server with real worker processes: pause holds a run
// (no step, no activity) and resume releases it; setHyperparameters applies from the next step, is
// refused with the field named, and survives a policy-worker SIGKILL and continue-as-new; stop ends a
// run with a checkpoint at the step reached and `dro resume` continues it with the same changes. The
// steered run ends byte-identical to a reference run given the same changes at the same steps. Then
// evaluation as its own workflow (children during training, a stored result, a corrupted checkpoint),
// a Temporal Schedule, `dro runs` and `dro report`.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScheduleNotFoundError, WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpointState, runKeys } from '../activities/records.js';
import type { EvaluationOutcome } from '../activities/types.js';
import type { RunConfigInput } from '../dro/config.js';
import { learningRateAt } from '../dro/schedule.js';
import { listRuns } from '../cli/commands/steer.js';
import { describeRun, failureMessage, queryProgress, resumeRun, runMetrics, startRun, type Connected } from '../cli/client.js';
import { checkpointFileKey, checkpointPrefix, listCheckpoints } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import type { evaluateCheckpoint } from '../workflows/evaluate-checkpoint.js';
import {
  CONTROL_QUEUE,
  evaluationScheduleId,
  evaluationWorkflowId,
  pauseSignal,
  resumeSignal,
  setHyperparametersUpdate,
  trainingWorkflowId,
  type TrainingProgress,
} from '../workflows/messages.js';
import type { trainingRun, TrainingRunResult } from '../workflows/training-run.js';
import { connect, holdsFor, privateServices, QUICK_FAILOVER, runDigest, tinyRunConfig, trainingDeadlineMs, waitFor, wideModel, WorkerProcess, type PrivateServices, type RunDigest } from './training-harness.js';

const TOTAL = 12;
/** A run of TOTAL steps, and as many again for the replays after a kill, the pauses and `dro follow`. */
const STEERED_MS = trainingDeadlineMs(2 * TOTAL);
const PEAK = 1e-4;
const DRO = join(import.meta.dirname, '..', 'bin', 'dro');

// 128 wide, so a change that did not apply (or applied a step late) shows in the last bits.
const RUN: RunConfigInput = {
  seed: 11,
  model: { init: wideModel(2) },
  data: { synthetic: { trainCount: 48, evalCount: 8 } },
  rollout: { groupSize: 4, maxNewTokens: 40, batchSequences: 8 },
  sft: { steps: 20, batchSize: 8, learningRate: 3e-3 },
  optimizer: { learningRate: PEAK },
  schedule: { totalSteps: TOTAL, warmupSteps: 2, lrSchedule: 'cosine', minLrRatio: 0.1 },
  checkpoint: { every: 4, keepLast: 10 },
  filtering: { enabled: false },
  evaluation: { examples: 8, maxNewTokens: 40, every: 4 },
  orchestration: { stepsPerExecution: 4, ...QUICK_FAILOVER },
};

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let policy: WorkerProcess;
let store: string;
let work: string;
const workers: WorkerProcess[] = [];
/** Where the reference run was stopped: never a multiple of checkpoint.every, so stop had to commit. */
let stoppedAt = 0;

const handleOf = (runId: string): WorkflowHandle<typeof trainingRun> => c.client.workflow.getHandle<typeof trainingRun>(trainingWorkflowId(runId));
const progressOf = async (runId: string): Promise<TrainingProgress | undefined> => queryProgress(c, runId);
/** Waits until the run's progress satisfies `ok`, which it does once the run has made `steps` more steps. */
const progressReaches = (runId: string, what: string, steps: number, ok: (p: TrainingProgress) => boolean) =>
  waitFor(
    `run ${runId}: ${what}`,
    async () => {
      const p = await progressOf(runId);
      return p && ok(p) ? p : undefined;
    },
    trainingDeadlineMs(steps),
  );

const ms = (t: temporal.api.history.v1.IHistoryEvent['eventTime']): number => Number(t?.seconds?.toString() ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

/** Every event of every execution of a workflow id (a run continues as new several times). */
async function allEvents(workflowId: string): Promise<temporal.api.history.v1.IHistoryEvent[]> {
  const events: temporal.api.history.v1.IHistoryEvent[] = [];
  for await (const w of c.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) events.push(...((await c.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory()).events ?? []));
  return events;
}

const cli = (...args: string[]) => spawnSync(DRO, args, { encoding: 'utf8', env: { ...process.env, ...services.env } });

/** Restarts the policy worker when a test kills it. */
async function startPolicy(): Promise<void> {
  policy = await WorkerProcess.start('policy', services.env);
  workers.push(policy);
}

beforeAll(async () => {
  services = await privateServices('control', ['temporal']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  work = await mkdtemp(join(tmpdir(), 'dro-control-'));
  store = join(work, 'store');
  control = await WorkerProcess.start('control', services.env);
  workers.push(control);
  await startPolicy();
}, 300_000);

afterAll(async () => {
  for (const w of workers) await w.kill('SIGTERM').catch(() => undefined);
  await c?.close();
  await services?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
}, 120_000);

// Both blocks share the private server's runs, in order: the steered run, then the reference run checked
// against it and stopped at stoppedAt, then evaluations, a schedule and a report of those runs.
describe.sequential('operating a run', () => {
  // Filled by the steered run, then checked against the reference.
  let pausedAt = 0;
  let secondPauseAt = 0;
  let steered: TrainingRunResult;
  let steeredDigest: RunDigest;

  it('pauses (no step, no activity for five step times), takes changes from the next step, survives a kill and continue-as-new, and refuses bad values', async () => {
    const runId = 'steered';
    const { handle } = await startRun(c, tinyRunConfig(store, RUN), runId);
    await progressReaches(runId, 'step 1', 1, (p) => p.step >= 1);
    const stepStarted = Date.now();
    await progressReaches(runId, 'step 2', 1, (p) => p.step >= 2);
    const stepMs = Date.now() - stepStarted;
    await handle.signal(pauseSignal);
    const paused = await progressReaches(runId, 'paused', 1, (p) => p.phase === 'paused');
    pausedAt = paused.step;
    expect(paused.paused).toBe(true);
    expect(paused.etaSeconds).toBeNull();
    // Held for five steps' time as this machine runs them now (at least 5 s): the step never moves and
    // nothing is scheduled. A run that ignored the pause would have made a step well within it.
    await holdsFor(Math.max(5_000, 5 * stepMs), async () => {
      expect((await progressOf(runId))!.step).toBe(pausedAt);
      expect((await handle.describe()).raw.pendingActivities ?? []).toEqual([]);
    });
    expect((await describeRun(c, runId)).status).toBe('paused');
    // What the Web UI shows: the static summary and the current details (served by the worker).
    expect(await (await handle.describe()).staticSummary()).toMatch(/^DRO run steered: synthetic, new 2-layer model, reward r3, 12 steps$/);
    const meta = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(meta.currentDetails).toContain(`**paused** · step **${pausedAt}** of ${TOTAL} · phase paused`);

    // `dro follow` prints a plain line when not on a terminal; Ctrl-C (SIGINT to its PID) stops following only.
    const follower = spawn(DRO, ['follow', '--run', runId], { env: { ...process.env, ...services.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follower.stdout.on('data', (b: Buffer) => (followed += b.toString()));
    follower.stderr.on('data', (b: Buffer) => (followed += b.toString()));
    const exited = new Promise<number | null>((r) => follower.once('exit', (code) => r(code)));
    await waitFor('a progress line', () => (new RegExp(`step ${pausedAt}/${TOTAL} paused`).test(followed) ? true : undefined), trainingDeadlineMs(0));
    process.kill(follower.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(followed).toContain(`stopped following run ${runId}; it goes on`);
    expect((await progressOf(runId))!.paused).toBe(true);

    // Refused with the field named, by the client and by `dro set` alike; nothing recorded.
    const refused = await handle.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: -1 }] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(((refused as WorkflowUpdateFailedError).cause as Error).message).toMatch(/^learningRate \(optimizer\.learningRate\) must be a number > 0, got -1/);
    const unknownField = await handle.executeUpdate(setHyperparametersUpdate, { args: [{ beta: 2 } as never] }).catch((e: unknown) => e);
    expect(((unknownField as WorkflowUpdateFailedError).cause as Error).message).toMatch(/^beta: unknown field/);
    const viaCli = cli('set', '--run', runId, '--temperature', '-0.5');
    expect(viaCli.status).toBe(1);
    expect(viaCli.stderr.trim()).toMatch(/^dro: run steered refused the change: temperature \(rollout\.temperature\) must be a number ≥ 0/);
    expect((await progressOf(runId))!.hyperparameters).toEqual([]);

    const accepted = await handle.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: 3e-4, temperature: 0.8 }] });
    expect(accepted.change).toEqual({ fromStep: pausedAt + 1, learningRate: 3e-4, temperature: 0.8 });
    expect(accepted.settings).toMatchObject({ learningRate: 3e-4, temperature: 0.8, klBeta: 0.01 });
    const resumed = cli('resume', '--run', runId);
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`run ${runId} was paused at step ${pausedAt}; it continues`);

    // A SIGKILLed policy worker two steps later: the rewind replays with the change.
    await progressReaches(runId, `step ${pausedAt + 2}`, 2, (p) => p.step >= pausedAt + 2);
    await policy.kill('SIGKILL');
    await startPolicy();
    // After a continue-as-new, a second pause and change, late enough that the reference run stops before it.
    // The kill's rewind replays what the killed worker had not checkpointed: up to a checkpoint interval more.
    await progressReaches(runId, 'a second execution', 6 - pausedAt + 4, (p) => p.executions >= 2 && p.repins >= 1 && p.step >= 6);
    await handle.signal(pauseSignal);
    secondPauseAt = (await progressReaches(runId, 'paused again', 1, (p) => p.phase === 'paused')).step;
    const second = await handle.executeUpdate(setHyperparametersUpdate, { args: [{ klBeta: 0.05 }] });
    expect(second.change).toEqual({ fromStep: secondPauseAt + 1, klBeta: 0.05 });
    await handle.signal(resumeSignal);

    steered = await handle.result();
    expect(steered).toMatchObject({ status: 'completed', steps: TOTAL });
    expect(steered.repins).toBeGreaterThanOrEqual(1);
    expect(steered.executions).toBeGreaterThanOrEqual(3);
    steeredDigest = await runDigest(store, runId, TOTAL);

    // The metrics say which settings every step ran with.
    const metrics = await runMetrics(store, runId);
    const lrAt = (step: number, peak: number) => learningRateAt(step, { peak, totalSteps: TOTAL, warmupSteps: 2, kind: 'cosine', minLrRatio: 0.1 });
    for (const m of metrics) {
      const changed = m.step > pausedAt;
      expect(m.learningRate, `step ${m.step}`).toBe(lrAt(m.step, changed ? 3e-4 : PEAK));
      expect(m.temperature, `step ${m.step}`).toBe(changed ? 0.8 : 1);
      expect(m.klBeta, `step ${m.step}`).toBe(m.step > secondPauseAt ? 0.05 : 0.01);
    }
    // Every checkpoint's state.json records the changes in effect at its step.
    const s = await openBlobStore(store);
    for (const cp of (await listCheckpoints(s, runId)).filter((x) => x.valid)) {
      const state = await readCheckpointState(s, runId, cp.step);
      expect(state.hyperparameters.map((h) => h.fromStep), `checkpoint ${cp.step}`).toEqual([pausedAt + 1, secondPauseAt + 1].filter((f) => f <= cp.step));
    }
  }, STEERED_MS);

  it('stop ends with a checkpoint at the step reached; resume continues with the same changes, byte-identical to the steered run', async () => {
    const runId = 'reference';
    const { handle } = await startRun(c, tinyRunConfig(store, RUN), runId);
    // The same changes at the same steps, given ahead of time.
    await handle.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: 3e-4, temperature: 0.8, fromStep: pausedAt + 1 }] });
    await handle.executeUpdate(setHyperparametersUpdate, { args: [{ klBeta: 0.05, fromStep: secondPauseAt + 1 }] });
    await progressReaches(runId, 'step 2', 2, (p) => p.step >= 2);
    // Held where no checkpoint was due, then stopped there.
    for (;;) {
      await handle.signal(pauseSignal);
      const held = await progressReaches(runId, 'paused', 1, (p) => p.phase === 'paused');
      if (held.step % 4 !== 0) break;
      await handle.signal(resumeSignal);
      await progressReaches(runId, `past step ${held.step}`, 1, (p) => p.step > held.step);
    }
    const stop = cli('stop', '--run', runId);
    expect(stop.status).toBe(0);
    const stopped = await handle.result();
    stoppedAt = stopped.steps;
    expect(stoppedAt % 4).not.toBe(0);
    expect(stopped.status).toBe('stopped');
    expect(stopped.steps).toBeLessThan(secondPauseAt + 1);
    expect(stopped.lastCheckpoint).toBe(stopped.steps);
    const s = await openBlobStore(store);
    expect((await listCheckpoints(s, runId)).find((x) => x.step === stopped.steps)?.valid).toBe(true);
    expect(await describeRun(c, runId)).toMatchObject({ state: 'completed', status: 'stopped' });
    expect((await runMetrics(store, runId)).at(-1)!.step).toBe(stopped.steps);

    // `dro runs` tells the stopped run from the completed one.
    // The visibility store catches up with the closed runs: no training.
    await waitFor(
      'dro runs states',
      async () => {
        const states = Object.fromEntries((await listRuns(c)).map((r) => [r.runId, r.state]));
        return states.steered === 'completed' && states.reference === 'stopped' ? states : undefined;
      },
      trainingDeadlineMs(0),
    );
    const listed = JSON.parse(cli('runs', '--json').stdout) as { runId: string; state: string; step: number; task: string }[];
    expect(listed.find((r) => r.runId === 'reference')).toMatchObject({ state: 'stopped', step: stopped.steps, task: 'synthetic' });
    expect(listed.find((r) => r.runId === 'steered')).toMatchObject({ state: 'completed', step: TOTAL });

    // The later change is not in the stopped checkpoint: the run's change log brings it back.
    const outcome = await resumeRun(c, runId, { log: () => undefined });
    expect(outcome).toMatchObject({ action: 'resumed', from: stopped.steps });
    const done = await outcome.handle!.result();
    expect(done).toMatchObject({ status: 'completed', steps: TOTAL });
    expect(await runDigest(store, runId, TOTAL)).toEqual(steeredDigest);
  }, STEERED_MS);
});

describe.sequential('evaluation as its own workflow', () => {
  const evaluate = (runId: string, step: number | null, workflowId: string) =>
    c.client.workflow.execute<typeof evaluateCheckpoint>('evaluateCheckpoint', { taskQueue: CONTROL_QUEUE, workflowId, args: [{ runId, store, step }] });

  // A start's bound and two steps' for the evaluations of steps 4 and 8, which may still be retrying after the kill.
  it('children evaluated every evaluation.every steps while training went on', { timeout: trainingDeadlineMs(2) }, async () => {
    const parent = await allEvents(trainingWorkflowId('steered'));
    const E = temporal.api.enums.v1.EventType;
    // Every activity is labelled in the Web UI with its phase and step.
    const summaries = parent
      .filter((e) => e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      .map((e) => JSON.parse(Buffer.from(e.userMetadata?.summary?.data ?? []).toString() || 'null') as string | null);
    expect(summaries).toEqual(expect.arrayContaining(['rollout step 1 · unit 1/1', 'score step 1 · unit 1/1', 'update step 1', 'checkpoint step 4']));
    expect(summaries.every((s) => typeof s === 'string' && s.length > 0)).toBe(true);
    const parentActivityEnds = parent.filter((e) => e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED).map((e) => ms(e.eventTime));
    expect(parent.filter((e) => e.eventType === E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED).length).toBeGreaterThanOrEqual(3); // base, 4, 8 (final too)
    let overlapping = 0;
    for (const step of [4, 8]) {
      // A child whose policy worker was killed under it is still retrying elsewhere: its result first.
      const result = (await c.client.workflow.getHandle(evaluationWorkflowId('steered', step)).result()) as EvaluationOutcome;
      expect(result).toMatchObject({ step, examples: 8 });
      const child = (await c.client.workflow.getHandle(evaluationWorkflowId('steered', step)).fetchHistory()).events ?? [];
      // From its first unit's start to its last unit's end.
      const started = ms(child.find((e) => e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_STARTED)!.eventTime);
      const ended = ms(child.findLast((e) => e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)!.eventTime);
      if (parentActivityEnds.some((t) => t > started && t < ended)) overlapping++;
    }
    // The parent never waited: its activities completed while a child evaluated.
    expect(overlapping).toBeGreaterThanOrEqual(1);
  });

  it('a second evaluation of a step computes nothing; a corrupted checkpoint fails with the reason and harms nothing', async () => {
    const s = await openBlobStore(store);
    const file = runKeys.evaluation('steered', 4);
    const before = await s.get(file);
    const again = await evaluate('steered', 4, 'again-4');
    expect(again).toMatchObject({ step: 4, cached: true });
    expect(Buffer.from(await s.get(file)).equals(Buffer.from(before))).toBe(true);

    // The stopped-at checkpoint was never evaluated (not an evaluation step).
    const key = await checkpointFileKey(s, 'reference', stoppedAt, 'model.safetensors');
    const good = await s.get(key);
    const bad = Uint8Array.from(good);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    await s.put(key, bad);
    try {
      const failed = await evaluate('reference', stoppedAt, 'corrupt').catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(WorkflowFailedError);
      expect(failureMessage(failed)).toMatch(new RegExp(`^cannot evaluate step ${stoppedAt} of run reference: checkpoint ${checkpointPrefix('reference', stoppedAt)} in .* is not valid: sha256 mismatch for model\\.safetensors`));
      // Nothing else changed: the other checkpoints, no evaluation written, the run's result.
      expect((await listCheckpoints(s, 'reference')).filter((x) => !x.valid).map((x) => x.step)).toEqual([stoppedAt]);
      expect(await s.exists(runKeys.evaluation('reference', stoppedAt))).toBe(false);
      expect((await handleOf('reference').result()).status).toBe('completed');
    } finally {
      await s.put(key, good);
    }
  }, 300_000);

  it('a schedule evaluates each new checkpoint once; --pause stops it; --delete removes it', async () => {
    const runId = 'scheduled';
    const { handle } = await startRun(c, tinyRunConfig(store, { ...RUN, evaluation: { examples: 4, maxNewTokens: 40, every: 0, baseAndFinal: false }, schedule: { totalSteps: 16 } }), runId);
    const created = cli('schedule-eval', '--run', runId, '--every', '2s');
    expect(created.status, created.stderr).toBe(0);
    await handle.result();
    // Keep firing for a few intervals after the last checkpoint: those firings must compute nothing.
    const scheduleId = evaluationScheduleId(runId);
    const schedule = c.client.schedule.getHandle(scheduleId);
    const firedAtEnd = (await schedule.describe()).info.numActionsTaken;
    // Three 2 s intervals, each firing an evaluation that finds its result stored: no training.
    await waitFor('three more firings', async () => ((await schedule.describe()).info.numActionsTaken >= firedAtEnd + 3 ? true : undefined), trainingDeadlineMs(0));
    expect(cli('schedule-eval', '--run', runId, '--pause').status).toBe(0);
    const idle = await waitFor(
      'no scheduled evaluation running',
      async () => {
        const d = await schedule.describe();
        return d.info.runningActions.length === 0 ? d : undefined;
      },
      trainingDeadlineMs(0),
    );
    // Paused: three intervals go by without a firing. The server's clock drives a schedule, so the
    // intervals must really pass (no time skipping on a real server); watched, it fails at a firing.
    await holdsFor(3 * 2_000, async () => expect((await schedule.describe()).info.numActionsTaken).toBe(idle.info.numActionsTaken));

    const outcomes: EvaluationOutcome[] = [];
    await waitFor(
      'every scheduled evaluation listed',
      async () => {
        outcomes.length = 0;
        for await (const w of c.client.workflow.list({ query: `TemporalScheduledById = '${scheduleId}'` })) {
          outcomes.push((await c.client.workflow.getHandle(w.workflowId, w.runId).result()) as EvaluationOutcome);
        }
        return outcomes.length === idle.info.numActionsTaken ? true : undefined;
      },
      trainingDeadlineMs(0),
    );
    const computed = outcomes.filter((o) => o.step !== null && !o.cached).map((o) => o.step);
    expect(new Set(computed).size).toBe(computed.length); // no checkpoint twice
    expect(computed.length).toBeGreaterThanOrEqual(2);
    expect(computed).toContain(16); // the newest is always reached
    for (const o of outcomes) if (o.step !== null && o.cached) expect(computed).toContain(o.step);
    expect(outcomes.filter((o) => o.step !== null && o.cached).length).toBeGreaterThanOrEqual(2);

    const paused = await schedule.describe();
    expect(paused.state.paused).toBe(true);
    const list = cli('schedule-eval', '--list', '--json');
    expect(JSON.parse(list.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ runId, paused: true })]));
    expect(cli('schedule-eval', '--run', runId, '--delete').status).toBe(0);
    await expect(schedule.describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
  }, trainingDeadlineMs(16));

  it('dro report writes charts as SVG and PNG and an index.html linking them', async () => {
    const out = join(work, 'report');
    const r = cli('report', '--run', 'steered', '--store', store, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const files = await readdir(out);
    const svgs = files.filter((f) => f.endsWith('.svg'));
    expect(svgs.length).toBeGreaterThanOrEqual(8);
    const index = await readFile(join(out, 'index.html'), 'utf8');
    for (const svg of svgs) {
      const text = await readFile(join(out, svg), 'utf8');
      expect(XMLValidator.validate(text), svg).toBe(true);
      expect(text).toMatch(/^<svg[^>]* width="\d+" height="\d+"/);
      const png = await readFile(join(out, svg.replace(/\.svg$/, '.png')));
      expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      expect(png.readUInt32BE(16)).toBeGreaterThan(100); // IHDR width
      expect(png.readUInt32BE(20)).toBeGreaterThan(100); // IHDR height
      expect(index).toContain(`"${svg}"`);
      expect(index).toContain(`"${svg.replace(/\.svg$/, '.png')}"`);
    }
    expect(svgs).toEqual(expect.arrayContaining(['reward.svg', 'loss.svg', 'kl.svg', 'learning-rate.svg', 'evaluation.svg']));
  });
});
