// A LoRA run killed and resumed: the policy worker is SIGKILLed during a rollout, an
// update and a checkpoint upload, a supervisor restarts it, and the run must end with adapter and
// optimizer files byte-identical to an uninterrupted run's and the same metrics at every step. Real
// Temporal (a private dev server) and real worker processes; a small model and few steps keep it cheap.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunConfigInput } from '../dro/config.js';
import { startRun, type Connected } from '../cli/client.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import type { TrainingRunResult } from '../workflows/training-run.js';
import { connect, PolicyKeeper, privateServices, QUICK_FAILOVER, runDigest, tinyRunConfig, trainingDeadlineMs, WorkerProcess, type PrivateServices, type RunDigest } from './training-harness.js';

const TOTAL = 6;

const LORA_RUN: RunConfigInput = {
  seed: 8,
  model: { loraRank: 4, loraAlpha: 16, loraTargets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj'] },
  data: { synthetic: { trainCount: 32 } },
  rollout: { groupSize: 4, maxNewTokens: 32, batchSequences: 8 },
  sft: { steps: 10, batchSize: 8, learningRate: 1e-2 },
  optimizer: { learningRate: 1e-3 },
  schedule: { totalSteps: TOTAL },
  checkpoint: { every: 2, keepLast: 2 },
  filtering: { every: 3, chainsPerPrompt: 2, candidatesPerRound: 6 },
  evaluation: { examples: 2, maxNewTokens: 24 },
  orchestration: { stepsPerExecution: 4, ...QUICK_FAILOVER },
};

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let dir: string;
let store: string;

/** Runs `runId` with one policy worker that is restarted whenever a fault kills it. */
async function supervisedRun(runId: string, env: Record<string, string>): Promise<{ result: TrainingRunResult; digest: RunDigest; restarts: number }> {
  const keeper = await PolicyKeeper.start({ ...services.env, ...env });
  try {
    const { handle } = await startRun(c, tinyRunConfig(store, LORA_RUN), runId);
    const result = await handle.result();
    return { result, digest: await runDigest(store, runId, TOTAL), restarts: keeper.restarts };
  } finally {
    await keeper.stop();
  }
}

beforeAll(async () => {
  services = await privateServices('lora-faults', ['temporal']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  control = await WorkerProcess.start('control', services.env);
  dir = await mkdtemp(join(tmpdir(), 'dro-lora-faults-'));
  store = join(dir, 'store');
}, 300_000);

afterAll(async () => {
  await control?.kill('SIGTERM');
  await c?.close();
  await services?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('a LoRA run under faults', () => {
  it('killed during a rollout, an update and a checkpoint upload, it ends byte-identical to an uninterrupted run', async () => {
    const reference = await supervisedRun('lora-reference', {});
    expect(reference.result.steps).toBe(TOTAL);
    expect(reference.result.executions).toBeGreaterThanOrEqual(2);
    expect(reference.restarts).toBe(0);
    expect(reference.result.evaluations.final?.step).toBe(TOTAL);
    // The final checkpoint is an adapter, not a model.
    const final = await loadCheckpoint(await openBlobStore(store), 'lora-reference', TOTAL);
    expect(Object.keys(final.files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors']);

    const killed = await supervisedRun('lora-killed', { DRO_FAULT: 'rollout@2,update@3,checkpoint-upload@4', DRO_FAULT_MARK: join(dir, 'marks') });
    expect(killed.restarts).toBe(3);
    expect(killed.result.repins).toBeGreaterThanOrEqual(3);
    expect(killed.result.replayedSteps).toBeGreaterThan(0);
    expect(killed.digest).toEqual(reference.digest);
    // Two runs of TOTAL steps, and as many again for the killed run's replays.
  }, trainingDeadlineMs(4 * TOTAL));
});
