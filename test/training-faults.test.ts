// The durable training run under faults: a reference run against runs of the same config in
// which the policy worker is SIGKILLed (during a rollout, an update, a checkpoint upload, at a random
// moment), the Temporal server restarts, SeaweedFS goes away during a commit, or the workflow is lost
// and resumed. Each must end with model and optimizer files byte-identical to the reference's and the
// same metrics at every step (outside `timing`). Everything runs on private servers of this file.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunConfigInput } from '../dro/config.js';
import { WorkflowFailedError } from '@temporalio/client';
import { queryProgress, resumeRun, RunError, startRun, type Connected } from '../cli/client.js';
import { openBlobStore } from '../storage/open.js';
import { checkpointFileKey, latestCheckpoint, listCheckpoints } from '../storage/checkpoints.js';
import { trainingWorkflowId } from '../workflows/messages.js';
import { connect, historyPayloads, PolicyKeeper, privateServices, QUICK_FAILOVER, runDigest, tinyRunConfig, tinyRunInput, trainingDeadlineMs, waitFor, wideModel, WorkerProcess, type PrivateServices, type RunDigest } from './training-harness.js';
import type { TrainingRunResult } from '../workflows/training-run.js';

const TOTAL = 12;
/** A whole run, and as many steps again replayed after its faults; also the beforeAll's services and reference run. */
const RUN_MS = trainingDeadlineMs(2 * TOTAL);

// Big enough to show rounding (4 layers, 128 wide), small enough for CI.
const RUN: RunConfigInput = {
  seed: 5,
  model: { init: wideModel(4) },
  data: { synthetic: { trainCount: 48, evalCount: 8 } },
  rollout: { groupSize: 4, maxNewTokens: 48, batchSequences: 8 },
  sft: { steps: 30, batchSize: 8, learningRate: 3e-3 },
  optimizer: { learningRate: 1e-4 },
  schedule: { totalSteps: TOTAL, warmupSteps: 2, lrSchedule: 'cosine', minLrRatio: 0.1 },
  checkpoint: { every: 3, keepLast: 2 },
  filtering: { every: 6, chainsPerPrompt: 2, candidatesPerRound: 8 },
  evaluation: { examples: 4, maxNewTokens: 48 },
  orchestration: { stepsPerExecution: 5, ...QUICK_FAILOVER },
};

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let store: string;
let reference: RunDigest;
let referenceResult: TrainingRunResult;
let markDir: string;

const workers: WorkerProcess[] = [];

/**
 * Runs `runId` with a supervised policy worker. `during` may disturb the run and returns the handle whose
 * result to wait for (a resume makes a new execution); by default the started one.
 */
async function runWith(
  runId: string,
  options: { env?: Record<string, string>; during?: (s: PolicyKeeper) => Promise<{ result(): Promise<TrainingRunResult> } | void> } = {},
): Promise<{ result: TrainingRunResult; digest: RunDigest; restarts: number }> {
  const supervisor = await PolicyKeeper.start({ ...services.env, ...options.env });
  try {
    const { handle } = await startRun(c, tinyRunConfig(store, RUN), runId);
    const replaced = await options.during?.(supervisor);
    const result = await (replaced ?? handle).result();
    return { result, digest: await runDigest(store, runId, TOTAL), restarts: supervisor.restarts };
  } finally {
    workers.push(...supervisor.all);
    await supervisor.stop();
  }
}

/** Waits until the run's progress satisfies `ok`, which it does once the run has made `steps` steps. */
const progressReaches = (runId: string, steps: number, ok: (p: { step: number; lastCheckpoint: number | null; phase: string }) => boolean) =>
  waitFor(
    `run ${runId} progress`,
    async () => {
      const p = await queryProgress(c, runId);
      return p && ok(p) ? p : undefined;
    },
    trainingDeadlineMs(steps),
  );

const fault = (spec: string, name: string): Record<string, string> => ({ DRO_FAULT: spec, DRO_FAULT_MARK: join(markDir, name) });

beforeAll(async () => {
  services = await privateServices('faults', ['temporal', 's3']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  control = await WorkerProcess.start('control', services.env);
  workers.push(control);
  store = `${services.env.DRO_S3_URI}/faults`;
  markDir = await mkdtemp(join(tmpdir(), 'dro-fault-marks-'));
  const ref = await runWith('reference');
  reference = ref.digest;
  referenceResult = ref.result;
}, RUN_MS);

afterAll(async () => {
  await control?.kill('SIGTERM');
  await c?.close();
  await services?.dispose();
}, 120_000);

describe('a training run under faults', () => {
  it('the reference run completes across continue-as-new with a metrics record per step', () => {
    expect(referenceResult.steps).toBe(TOTAL);
    expect(referenceResult.executions).toBeGreaterThanOrEqual(3);
    expect(reference.metrics.map((m) => (m as { step: number }).step)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
    expect(referenceResult.evaluations.base?.step).toBe(0);
    expect(referenceResult.evaluations.final?.step).toBe(TOTAL);
  });

  it('two runs of one config under different run ids end with identical weights', async () => {
    const twin = await runWith('reference-twin');
    expect(twin.digest).toEqual(reference);
  }, RUN_MS);

  it('ends byte-identical after SIGKILLs during a rollout, an update and a checkpoint upload (fault injection)', async () => {
    const run = await runWith('kill-at-points', { env: fault('rollout@2,update@5,checkpoint-upload@9', 'points') });
    expect(run.restarts).toBe(3);
    expect(run.result.repins).toBeGreaterThanOrEqual(3);
    expect(run.result.replayedSteps).toBeGreaterThan(0);
    expect(run.digest).toEqual(reference);
  }, RUN_MS);

  it('ends byte-identical after a SIGKILL by PID at a random moment', async () => {
    const at = 2 + Math.floor(Math.random() * 8);
    const run = await runWith('kill-random', {
      during: async (s) => {
        await progressReaches('kill-random', at, (p) => p.step >= at);
        await s.current.kill('SIGKILL');
      },
    });
    expect(run.restarts).toBe(1);
    expect(run.digest).toEqual(reference);
  }, RUN_MS);

  it('ends byte-identical after the Temporal server is stopped and started mid-run', async () => {
    const run = await runWith('temporal-restart', {
      during: async () => {
        await progressReaches('temporal-restart', 4, (p) => p.step >= 4);
        await services.down(['temporal']);
        await services.up(['temporal']);
      },
    });
    expect(run.digest).toEqual(reference);
  }, RUN_MS);

  it('a terminated run is resumed from its latest valid checkpoint, once for two resumes at once, and ends byte-identical', async () => {
    const run = await runWith('terminated', {
      during: async () => {
        await progressReaches('terminated', 6, (p) => (p.lastCheckpoint ?? 0) >= 6);
        await c.client.workflow.getHandle(trainingWorkflowId('terminated')).terminate('test: the orchestrator lost the run');
        const outcomes = await Promise.all([resumeRun(c, 'terminated', { log: () => {} }), resumeRun(c, 'terminated', { log: () => {} })]);
        expect(outcomes.filter((o) => o.action === 'resumed')).toHaveLength(1);
        expect(outcomes.filter((o) => o.action !== 'resumed').every((o) => o.action === 'raced' || o.action === 'already-running')).toBe(true);
        const resumed = outcomes.find((o) => o.action === 'resumed')!;
        expect(resumed.from).toBeGreaterThanOrEqual(6);
        return resumed.handle!;
      },
    });
    expect(run.digest).toEqual(reference);
  }, RUN_MS);

  it("a run whose Temporal database was deleted is resumed from the store alone and ends byte-identical", async () => {
    const run = await runWith('db-deleted', {
      during: async () => {
        await progressReaches('db-deleted', 3, (p) => (p.lastCheckpoint ?? 0) >= 3);
        await services.down(['temporal']);
        await rm(services.cfg.temporal.dbFile, { force: true });
        await services.up(['temporal']);
        // The restarted server and the worker's reconnection first: a start, no step.
        const outcome = await waitFor(
          'a resume after the wipe',
          async () => {
            const o = await resumeRun(c, 'db-deleted', { store, log: () => {} });
            return o.action === 'resumed' ? o : undefined;
          },
          trainingDeadlineMs(0),
        );
        return outcome.handle!;
      },
    });
    expect(run.digest).toEqual(reference);
  }, RUN_MS);

  it('waits out a storage outage during a checkpoint commit and ends byte-identical, never choosing an invalid checkpoint', async () => {
    const held = join(markDir, 'outage.hold-upload@6');
    const run = await runWith('storage-outage', {
      // The S3 client gives up quickly, so the activity itself fails and Temporal retries it.
      env: { ...fault('hold-upload@6', 'outage'), DRO_S3_RETRY_SECONDS: '2' },
      during: async () => {
        await waitFor('the commit of step 6 to reach its manifest', () => (existsSync(held) ? true : undefined), trainingDeadlineMs(6));
        await services.down(['s3']);
        await writeFile(`${held}.release`, '');
        // Down until the commit has failed at least once and is being retried.
        // The S3 client's 2 s, then Temporal's retry backoff: no step, a start's bound.
        await waitFor(
          'a retried commit',
          async () => {
            const d = await c.client.workflow.getHandle(trainingWorkflowId('storage-outage')).describe();
            const raw = d.raw.pendingActivities ?? [];
            return raw.some((a) => (a.attempt ?? 0) >= 2) || d.raw.pendingActivities?.length === 0 ? true : undefined;
          },
          trainingDeadlineMs(0),
        );
        await services.up(['s3']);
      },
    });
    expect(run.digest).toEqual(reference);
    const listing = await listCheckpoints(await openBlobStore(store), 'storage-outage');
    expect(listing.every((l) => l.valid)).toBe(true);
  }, RUN_MS);

  it('a NaN loss fails the run naming the step; resume refuses a change to what defines the checkpoint, falls back past a corrupted checkpoint, and ends byte-identical', async () => {
    const supervisor = await PolicyKeeper.start({ ...services.env, ...fault('nan-loss@4', 'nan') });
    try {
      const { handle } = await startRun(c, tinyRunConfig(store, RUN), 'nan');
      const failure = await handle.result().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(WorkflowFailedError);
      const message = JSON.stringify((failure as WorkflowFailedError).cause?.message);
      expect(message).toMatch(/training step 4/);
      expect(message).toMatch(/NaN/);
      const bucketStore = await openBlobStore(store);
      expect((await latestCheckpoint(bucketStore, 'nan'))?.step).toBe(3);

      const changed = join(markDir, 'changed.json');
      // keepLast alone a resume could change; beta2 and the checkpoint cadence it cannot.
      await writeFile(changed, JSON.stringify({ ...tinyRunInput(store, RUN), optimizer: { ...RUN.optimizer, beta2: 0.99 }, checkpoint: { store, every: 2, keepLast: 5 } }));
      await expect(resumeRun(c, 'nan', { configFile: changed, log: () => {} })).rejects.toThrow(/differs from checkpoint 3's config: a resume cannot change checkpoint\.every, optimizer\.beta2 \(/);
      await expect(resumeRun(c, 'nan', { configFile: changed, log: () => {} })).rejects.toBeInstanceOf(RunError);

      // Flip one byte of the newest checkpoint's weights: resume must fall back to the base and say so.
      const key = await checkpointFileKey(bucketStore, 'nan', 3, 'model.safetensors');
      const bytes = await bucketStore.get(key);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
      await bucketStore.put(key, bytes);
      const said: string[] = [];
      const outcome = await resumeRun(c, 'nan', { log: (line) => said.push(line) });
      expect(said.join('\n')).toMatch(/checkpoint 3 is invalid \(sha256 mismatch/);
      expect(outcome.from).toBe(0);
      await outcome.handle!.result();
      expect(await runDigest(store, 'nan', TOTAL)).toEqual(reference);
    } finally {
      workers.push(...supervisor.all);
      await supervisor.stop();
    }
  }, RUN_MS);

  it('keeps every activity payload under 64 KiB and the S3 secret out of every history and log', async () => {
    const secret = services.env.AWS_SECRET_ACCESS_KEY!;
    expect(secret.length).toBeGreaterThan(8);
    const { histories, largest, secretFound } = await historyPayloads(c, secret);
    expect(secretFound).toBe(false);
    expect(histories).toBeGreaterThan(5);
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThan(64 * 1024);
    for (const w of workers) expect(w.output).not.toContain(secret);
    // Reads every history of the file's ten runs and their children's; no training, but many round trips.
  }, 300_000);
});
