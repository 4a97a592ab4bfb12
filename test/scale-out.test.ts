// One run on many machines (docs/architecture.md, "One run on many machines"): a run's rollout and
// scoring units spread over every policy worker, and its result does not depend on how many there are.
// A reference run on one policy worker against the same config under other run ids on three workers:
// the final model and optimizer files byte-identical, the metrics identical outside `timing`, and the
// units computed by more than one worker; then with workers killed, hung and added mid-run. Everything
// runs on private Temporal and SeaweedFS servers of this file; workers are killed by their own PIDs.
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { temporal } from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunConfigInput } from '../dro/config.js';
import { queryProgress, startRun, type Connected } from '../cli/client.js';
import { CONTROL_QUEUE, evaluationWorkflowId, pauseSignal, progressQuery, resumeSignal, trainingWorkflowId } from '../workflows/messages.js';
import type { evaluateCheckpoint } from '../workflows/evaluate-checkpoint.js';
import { openBlobStore } from '../storage/open.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { overlay } from '../scripts/experiment/plan.js';
import { readEvaluation } from '../activities/records.js';
import type { TrainingRunResult } from '../workflows/training-run.js';
import { connect, historyPayloads, privateServices, QUICK_FAILOVER, runDigest, tinyRunConfig, trainingDeadlineMs, waitFor, wideModel, WorkerProcess, type PrivateServices, type RunDigest } from './training-harness.js';

const TOTAL = 4;
const DRO = join(import.meta.dirname, '..', 'bin', 'dro');
const WORKFLOWS = join(import.meta.dirname, '..', 'workflows', 'index.ts');
const RUN_MS = trainingDeadlineMs(2 * TOTAL);

// 4 prompts × 4 chains in units of 2: 8 rollout units and 8 scoring units a step, for any number of workers.
const RUN: RunConfigInput = {
  seed: 11,
  model: { init: wideModel(2), intraOpThreads: 1 },
  data: { synthetic: { trainCount: 32, evalCount: 64 } },
  rollout: { promptsPerStep: 4, groupSize: 4, maxNewTokens: 32, batchSequences: 2 },
  sft: { steps: 20, batchSize: 8, learningRate: 3e-3 },
  optimizer: { learningRate: 1e-4 },
  schedule: { totalSteps: TOTAL },
  checkpoint: { every: 2 },
  filtering: { enabled: false },
  evaluation: { baseAndFinal: false, examples: 64, maxNewTokens: 24 },
  orchestration: QUICK_FAILOVER,
};

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let store: string;
let reference: RunDigest;
const everyWorker: WorkerProcess[] = [];

async function policyWorkers(n: number, options: string[] = []): Promise<WorkerProcess[]> {
  const started = await Promise.all(Array.from({ length: n }, () => WorkerProcess.start('policy', services.env, options)));
  everyWorker.push(...started);
  return started;
}

const stopAll = (workers: WorkerProcess[]): Promise<unknown> => Promise.all(workers.map((w) => w.kill('SIGTERM')));

/** Which worker (Temporal identity) started each activity of the run's current execution, by activity type. */
const unitWorkers = (runId: string): Promise<Record<string, Set<string>>> => unitWorkersOf(trainingWorkflowId(runId));

async function unitWorkersOf(workflowId: string): Promise<Record<string, Set<string>>> {
  const history = await c.client.workflow.getHandle(workflowId).fetchHistory();
  const types = new Map<string, string>();
  const out: Record<string, Set<string>> = {};
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType!.name!);
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const type = types.get(String(started.scheduledEventId));
      if (type) (out[type] ??= new Set()).add(started.identity!);
    }
  }
  return out;
}

/** Runs `runId` on the workers polling now; `during` may disturb it while it trains. */
async function run(runId: string, during?: () => Promise<void>, config: RunConfigInput = RUN): Promise<{ result: TrainingRunResult; digest: RunDigest }> {
  const { handle } = await startRun(c, tinyRunConfig(store, config), runId);
  const [result] = await Promise.all([handle.result(), during?.()]);
  return { result, digest: await runDigest(store, runId, TOTAL) };
}

/** Waits until the run's progress satisfies `ok`. */
const progressWhen = (runId: string, what: string, ok: (p: NonNullable<Awaited<ReturnType<typeof queryProgress>>>) => boolean) =>
  waitFor(
    `run ${runId}: ${what}`,
    async () => {
      const p = await queryProgress(c, runId);
      return p && ok(p) ? p : undefined;
    },
    trainingDeadlineMs(TOTAL),
    { everyMs: 100 },
  );

/** The pinned trainer among `workers`: its own queue is named after its PID. */
async function trainerOf(runId: string, workers: WorkerProcess[]): Promise<WorkerProcess> {
  const p = await progressWhen(runId, 'a pinned worker', (q) => q.policyWorker !== null);
  const trainer = workers.find((w) => p.policyWorker!.includes(`-${w.pid}-`));
  if (!trainer) throw new Error(`the pinned queue ${p.policyWorker} is none of the workers ${workers.map((w) => w.pid).join(', ')}`);
  return trainer;
}

/** Evaluates checkpoint `step` of `runId` on the workers polling now; returns the stored record. */
async function evaluate(runId: string, step: number) {
  const handle = await c.client.workflow.start<typeof evaluateCheckpoint>('evaluateCheckpoint', { taskQueue: CONTROL_QUEUE, workflowId: evaluationWorkflowId(runId, step), args: [{ runId, store, step }] });
  const outcome = await handle.result();
  expect(outcome.step).toBe(step);
  const record = await readEvaluation(await openBlobStore(store), runId, step);
  return { record: record!, workers: await unitWorkersOf(handle.workflowId) };
}

/** A worker among `candidates` that holds a unit of the run right now (started, not yet completed), by the server's pending activities. */
function unitHolder(runId: string, candidates: WorkerProcess[]): Promise<WorkerProcess> {
  const started = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
  return waitFor(
    `a unit of ${runId} held by one of ${candidates.map((w) => w.pid).join(', ')}`,
    async () => {
      const { raw } = await c.client.workflow.getHandle(trainingWorkflowId(runId)).describe();
      for (const a of raw.pendingActivities ?? []) {
        if (!/Unit$/.test(a.activityType?.name ?? '') || a.state !== started) continue;
        const holder = candidates.find((w) => a.lastWorkerIdentity === `policy-${w.pid}@${hostname()}`);
        if (holder) return holder;
      }
      return undefined;
    },
    trainingDeadlineMs(TOTAL),
    { everyMs: 50 },
  );
}

/** The highest attempt any activity of `type` (by default any unit) of the run's current execution started with. */
async function maxAttempt(runId: string, type = /Unit$/): Promise<number> {
  const history = await c.client.workflow.getHandle(trainingWorkflowId(runId)).fetchHistory();
  const types = new Map<string, string>();
  let most = 0;
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes) types.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType!.name!);
    const started = e.activityTaskStartedEventAttributes;
    if (started && type.test(types.get(String(started.scheduledEventId)) ?? '')) most = Math.max(most, started.attempt ?? 0);
  }
  return most;
}

/** Notes of a run that say a unit was computed twice with other bytes, or on another runtime. */
const unitNotes = (notes: string[]): string[] => notes.filter((n) => /other bytes|fingerprint/.test(n));

beforeAll(async () => {
  // The replays below would log every workflow bundle they build.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  services = await privateServices('scale', ['temporal', 's3']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  control = await WorkerProcess.start('control', services.env);
  store = `${services.env.DRO_S3_URI}/scale`;
  const one = await policyWorkers(1);
  try {
    reference = (await run('one-worker')).digest;
  } finally {
    await stopAll(one);
  }
}, RUN_MS);

afterAll(async () => {
  await Promise.all(everyWorker.map((w) => w.kill('SIGTERM')));
  await control?.kill('SIGTERM');
  await c?.close();
  await services?.dispose();
}, 120_000);

describe('one run on many policy workers', () => {
  it('three workers share the units and end byte-identical to one worker', async () => {
    const three = await policyWorkers(3);
    try {
      const { result, digest } = await run('three-workers');
      expect(result).toMatchObject({ status: 'completed', steps: TOTAL, repins: 0 });
      expect(digest).toEqual(reference);
      const by = await unitWorkers('three-workers');
      console.log(`units by worker: ${JSON.stringify(Object.fromEntries(Object.entries(by).map(([k, v]) => [k, [...v]])))}`);
      expect(by.rolloutUnit!.size).toBeGreaterThanOrEqual(2);
      expect(by.scoreUnit!.size).toBeGreaterThanOrEqual(2);
      const progress = await c.client.workflow.getHandle(trainingWorkflowId('three-workers')).query(progressQuery);
      expect(progress.workers!.length).toBeGreaterThanOrEqual(2);
      expect(unitNotes(progress.notes)).toEqual([]);
    } finally {
      await stopAll(three);
    }
  }, RUN_MS);

  it('an evaluation of 64 examples on two workers gives exactly the metrics and completions of one worker', async () => {
    // The same checkpoint bytes under two run ids (the runs above are byte-identical), so neither evaluation finds the other's record.
    const one = await policyWorkers(1);
    let single;
    try {
      single = await evaluate('one-worker', TOTAL);
    } finally {
      await stopAll(one);
    }
    const two = await policyWorkers(2);
    try {
      const pair = await evaluate('three-workers', TOTAL);
      expect(pair.workers.evaluationUnit!.size).toBe(2);
      expect(pair.record.examples).toBe(64);
      expect(pair.record.metrics).toEqual(single.record.metrics);
      expect(pair.record.predictions).toEqual(single.record.predictions);
    } finally {
      await stopAll(two);
    }
  }, RUN_MS);

  it('a LoRA run on two workers publishes only its adapters and ends byte-identical to one worker', async () => {
    const lora = overlay(RUN, { model: { loraRank: 4, loraAlpha: 8, loraTargets: ['q_proj', 'v_proj'] } });
    const one = await policyWorkers(1);
    let alone: RunDigest;
    try {
      alone = (await run('lora-one', undefined, lora)).digest;
    } finally {
      await stopAll(one);
    }
    const two = await policyWorkers(2);
    try {
      const { result, digest } = await run('lora-two', undefined, lora);
      expect(result).toMatchObject({ status: 'completed', steps: TOTAL });
      expect(digest).toEqual(alone);
      expect((await unitWorkers('lora-two')).rolloutUnit!.size).toBe(2);
      // What the store holds of the published versions: the adapters alone, each exactly the size of the checkpoint's adapter file.
      const blobs = await openBlobStore(store);
      const published = await blobs.list('lora-two/policies/');
      const adapters = (await loadCheckpoint(blobs, 'lora-two', TOTAL)).files['adapter_model.safetensors']!.byteLength;
      const full = (await loadCheckpoint(blobs, 'one-worker', TOTAL)).files['model.safetensors']!.byteLength;
      console.log(`published versions: ${published.map((b) => b.bytes).join(', ')} bytes; adapters ${adapters}, full model ${full}`);
      expect(published.length).toBeGreaterThanOrEqual(2);
      for (const b of published) expect(b.bytes).toBe(adapters);
      expect(adapters * 10).toBeLessThan(full);
    } finally {
      await stopAll(two);
    }
  }, RUN_MS);

  it('loses only the units a SIGKILLed worker and a hung (SIGSTOPped) worker held, and ends byte-identical', async () => {
    const three = await policyWorkers(3);
    try {
      const { result, digest } = await run('kill-and-hang', async () => {
        const trainer = await trainerOf('kill-and-hang', three);
        const others = three.filter((w) => w !== trainer);
        // From a random moment of the steps (each takes a second or two here), the first non-trainer found holding a unit is killed.
        await progressWhen('kill-and-hang', 'step 1', (p) => p.step >= 1);
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 1500)));
        const killed = await unitHolder('kill-and-hang', others);
        await killed.kill('SIGKILL');
        // The other one hangs mid-unit for three heartbeat timeouts, then goes on as a zombie.
        const hung = others.find((w) => w !== killed)!;
        await unitHolder('kill-and-hang', [hung]);
        process.kill(hung.pid, 'SIGSTOP');
        await new Promise((r) => setTimeout(r, 3 * QUICK_FAILOVER.heartbeatSeconds * 1000));
        process.kill(hung.pid, 'SIGCONT');
      });
      expect(result).toMatchObject({ status: 'completed', steps: TOTAL, repins: 0 });
      expect(digest).toEqual(reference);
      const progress = await c.client.workflow.getHandle(trainingWorkflowId('kill-and-hang')).query(progressQuery);
      expect(unitNotes(progress.notes)).toEqual([]);
      // The units the two held were started again elsewhere.
      expect(await maxAttempt('kill-and-hang')).toBeGreaterThanOrEqual(2);
    } finally {
      await stopAll(three);
    }
  }, RUN_MS);

  it('runs share a pool: each byte-identical to running alone, and a worker at its run limit refuses a pin, which waits for room', async () => {
    const pool = await policyWorkers(2, ['--max-runs', '1']);
    const ids = ['pool-a', 'pool-b', 'pool-c'];
    try {
      const started = await Promise.all(ids.map((id) => startRun(c, tinyRunConfig(store, RUN), id)));
      // Two runs train at once, one on each worker; the third is refused by both until one ends.
      const both = await waitFor(
        'two runs training at once',
        async () => {
          const training = (await Promise.all(ids.map((id) => queryProgress(c, id)))).filter((p) => p && p.policyWorker !== null && p.phase !== 'done');
          return training.length >= 2 ? training : undefined;
        },
        trainingDeadlineMs(TOTAL),
        { everyMs: 100 },
      );
      expect(new Set(both.map((p) => p!.policyWorker)).size).toBe(2);
      const results = await Promise.all(started.map((r) => r.handle.result()));
      for (const [i, id] of ids.entries()) {
        expect(results[i]).toMatchObject({ status: 'completed', steps: TOTAL, repins: 0 });
        expect(await runDigest(store, id, TOTAL)).toEqual(reference);
      }
      const pinAttempts = await Promise.all(ids.map((id) => maxAttempt(id, /^pinPolicyWorker$/)));
      console.log(`pin attempts: ${pinAttempts.join(', ')}`);
      expect(Math.max(...pinAttempts)).toBeGreaterThanOrEqual(2);
      expect(pool.map((w) => w.output).join('\n')).not.toMatch(/InsufficientMemory/);
    } finally {
      await stopAll(pool);
    }
  }, 2 * RUN_MS);

  it('keeps every activity payload under 64 KiB and the S3 secret out of every history and worker log', async () => {
    const secret = services.env.AWS_SECRET_ACCESS_KEY!;
    expect(secret.length).toBeGreaterThan(8);
    const { histories, largest, secretFound } = await historyPayloads(c, secret);
    expect(secretFound).toBe(false);
    console.log(`${histories} histories, largest payload ${largest} bytes`);
    // Every recorded execution replays on today's workflow code (a query of a finished run replays it too).
    for await (const w of c.client.workflow.list({ query: `WorkflowType = 'trainingRun' OR WorkflowType = 'evaluateCheckpoint'` })) {
      const history = await c.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
      try {
        await Worker.runReplayHistory({ workflowsPath: WORKFLOWS }, history, w.workflowId);
      } catch (err) {
        const file = join(import.meta.dirname, '..', '.scratch', `history-${w.workflowId}.json`);
        await writeFile(file, JSON.stringify(temporal.api.history.v1.History.toObject(temporal.api.history.v1.History.fromObject(history), { bytes: String, longs: String })));
        throw new Error(`${w.workflowId} (${w.runId}) does not replay (history in ${file}): ${(err as Error).message}`, { cause: err });
      }
    }
    expect(histories).toBeGreaterThan(8);
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThan(64 * 1024);
    for (const w of [...everyWorker, control]) expect(w.output).not.toContain(secret);
  }, 300_000);

  it('dro status says when no policy worker serves a run, and lists the workers that computed its units once they do', async () => {
    // The workers of the tests before are gone; a poller that has not polled for 15 s counts as gone here (90 s by default).
    const dro = (...args: string[]) => spawnSync(DRO, args, { encoding: 'utf8', env: { ...process.env, ...services.env, DRO_POLLER_FRESH_SECONDS: '15' } });
    const { handle } = await startRun(c, tinyRunConfig(store, RUN), 'unserved');
    await progressWhen('unserved', 'pinning', (p) => p.phase === 'pinning');
    const waiting = await waitFor(
      'dro status to say nobody serves the run',
      () => {
        const r = dro('status', '--run', 'unserved');
        expect(r.status, r.stderr).toBe(0);
        return r.stdout.includes('no policy worker polls dro-units') ? r.stdout : undefined;
      },
      60_000,
      { everyMs: 2000 },
    );
    expect(waiting).toContain('no policy worker polls dro-units: the run\'s units wait until one starts (`dro worker --role policy`)');
    const [worker] = await policyWorkers(1);
    try {
      await progressWhen('unserved', 'step 2', (p) => p.step >= 2);
      const served = dro('status', '--run', 'unserved', '--json');
      expect(served.status, served.stderr).toBe(0);
      const status = JSON.parse(served.stdout) as { pollers: { units: string[] }; workers: { worker: string; units: number }[] };
      expect(status.pollers.units).toEqual([`policy-${worker!.pid}@${hostname()}`]);
      expect(status.workers.map((w) => w.worker)).toEqual([`policy-${worker!.pid}@${hostname()}`]);
      expect(status.workers[0]!.units).toBeGreaterThan(0);
      await handle.result();
    } finally {
      await worker!.kill('SIGTERM');
    }
  }, RUN_MS);

  it('a worker that joins mid-run takes units from then on, and the run goes on when all but the trainer leave', async () => {
    const [trainer] = await policyWorkers(1);
    try {
      let joined: WorkerProcess | undefined;
      const { result, digest } = await run('join-and-leave', async () => {
        const handle = c.client.workflow.getHandle(trainingWorkflowId('join-and-leave'));
        await progressWhen('join-and-leave', 'step 1', (p) => p.step >= 1);
        // Held at a step boundary while the new worker starts, so that it joins with steps still to go.
        await handle.signal(pauseSignal);
        const paused = await progressWhen('join-and-leave', 'paused', (p) => p.phase === 'paused');
        [joined] = await policyWorkers(1);
        await handle.signal(resumeSignal);
        const took = await progressWhen('join-and-leave', 'a unit computed by the new worker', (p) => (p.workers ?? []).some((w) => w.worker.startsWith(`policy-${joined!.pid}@`)));
        expect(took.workers!.find((w) => w.worker.startsWith(`policy-${joined!.pid}@`))!.lastStep).toBeGreaterThan(paused.step);
        await joined!.kill('SIGTERM');
      });
      expect(result).toMatchObject({ status: 'completed', steps: TOTAL, repins: 0 });
      expect(digest).toEqual(reference);
      expect(joined!.child.exitCode).not.toBeNull();
    } finally {
      await trainer!.kill('SIGTERM');
    }
  }, RUN_MS);
});
