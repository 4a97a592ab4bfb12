// Your own data through the real product: a JSONL of prompt/reference records with numeric answers
// (examples/own-data) trains on the real workflow started by `dro train`, evaluates with ROUGE and accuracy,
// and ends byte-identical when its policy worker is SIGKILLed mid-run; a file with bad records is refused by
// `dro data check` and `dro train` by file and line before anything starts. Private Temporal and S3.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEvaluation } from '../activities/records.js';
import type { RunConfigInput } from '../dro/config.js';
import { openBlobStore } from '../storage/open.js';
import { listCheckpoints } from '../storage/checkpoints.js';
import { trainingWorkflowId } from '../workflows/messages.js';
import type { TrainingRunResult } from '../workflows/training-run.js';
import { connect, PolicyKeeper, privateServices, QUICK_FAILOVER, runDigest, trainingDeadlineMs, WorkerProcess, type PrivateServices } from './training-harness.js';
import type { Connected } from '../cli/client.js';
import { ensureSmolLM2 } from '../scripts/models/smollm2.js';

const ROOT = join(import.meta.dirname, '..');
const DRO = join(ROOT, 'bin', 'dro');
const EXAMPLE = join(ROOT, 'examples', 'own-data');
const TOTAL = 4;
const RUN_MS = trainingDeadlineMs(3 * TOTAL);

let services: PrivateServices;
let c: Connected;
let control: WorkerProcess;
let dir: string;
let store: string;

/** A new 2-layer model on the byte tokenizer, so the run is about the data path, not the model. */
const config = (overrides: Partial<RunConfigInput> = {}): RunConfigInput => ({
  seed: 3,
  model: { init: { vocab_size: 260, hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, tie_word_embeddings: true } },
  data: { task: 'jsonl', trainPath: join(EXAMPLE, 'train.jsonl'), evalPath: join(EXAMPLE, 'eval.jsonl'), maxPromptTokens: 200, maxReferenceTokens: 100, jsonl: { answerCheck: 'numeric' } },
  rollout: { promptsPerStep: 2, groupSize: 4, maxNewTokens: 24, batchSequences: 4 },
  optimizer: { learningRate: 1e-3 },
  schedule: { totalSteps: TOTAL },
  checkpoint: { store, every: 2 },
  filtering: { every: 2, chainsPerPrompt: 2, candidatesPerRound: 6 },
  evaluation: { examples: 4, samples: 2, temperature: 1, maxNewTokens: 24 },
  orchestration: QUICK_FAILOVER,
  ...overrides,
});

/** Runs `bin/dro` with the private services' variables; resolves with its exit code and output. */
function dro(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return droIn(dir, ...args);
}

function droIn(cwd: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(DRO, args, { cwd, env: { ...process.env, ...services.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

async function writeConfig(name: string, input: RunConfigInput): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(input));
  return path;
}

/** Starts a run with `dro train` under a supervised policy worker (env: a fault plan) and waits for its end. */
async function trainWith(runId: string, env: Record<string, string> = {}): Promise<{ result: TrainingRunResult; restarts: number }> {
  const keeper = await PolicyKeeper.start({ ...services.env, ...env });
  try {
    const started = await dro('train', '--config', await writeConfig(`${runId}.json`, config()), '--run-id', runId);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    const result = (await c.client.workflow.getHandle(trainingWorkflowId(runId)).result()) as TrainingRunResult;
    return { result, restarts: keeper.restarts };
  } finally {
    await keeper.stop();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-own-data-'));
  services = await privateServices('own-data', ['temporal', 's3']);
  c = await connect(services.env.TEMPORAL_ADDRESS!);
  control = await WorkerProcess.start('control', services.env);
  store = `${services.env.DRO_S3_URI}/own-data`;
}, RUN_MS);

afterAll(async () => {
  await control?.kill('SIGTERM');
  await c?.close();
  await services?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('a run on your own JSONL', () => {
  it('bad records are refused by file and line by `dro data check` and `dro train`, before anything starts', async () => {
    const bad = join(dir, 'bad.jsonl');
    const good = (await readFile(join(EXAMPLE, 'train.jsonl'), 'utf8')).trimEnd().split('\n');
    const longPrompt = JSON.stringify({ prompt: 'Why? '.repeat(60), reference: 'Because.' });
    await writeFile(bad, [good[0], '{"prompt": "Convert 2 km to metres."}', '{"prompt": "Empty.", "reference": ""}', '{"prompt": oops}', longPrompt, good[1]].join('\n') + '\n');
    const file = await writeConfig('bad.json', config({ data: { ...config().data, trainPath: bad } }));

    const check = await dro('data', 'check', '--config', file);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain('4 problems:');
    expect(check.stdout).toContain(`${bad}:2: missing field "reference"`);
    expect(check.stdout).toContain(`${bad}:3: field "reference" is empty`);
    expect(check.stdout).toMatch(new RegExp(`${bad}:4: not JSON: `));
    expect(check.stdout).toMatch(new RegExp(`${bad}:5: prompt has \\d+ tokens, more than data.maxPromptTokens 200`));
    expect(check.stdout).toMatch(/train: 2 usable examples/);

    const train = await dro('train', '--config', file, '--run-id', 'bad-data');
    expect(train.code).toBe(1);
    expect(train.stderr).toContain('4 data records cannot be used (nothing was started)');
    expect(train.stderr).toContain(`${bad}:2: missing field "reference"`);
    await expect(c.client.workflow.getHandle(trainingWorkflowId('bad-data')).describe()).rejects.toThrow(/not found/i);
    expect(await listCheckpoints(await openBlobStore(store), 'bad-data')).toEqual([]);

    const clean = await dro('data', 'check', '--config', await writeConfig('clean.json', config()));
    expect(clean.code).toBe(0);
    expect(clean.stdout).toContain('train: 48 usable examples');
    expect(clean.stdout).toContain("answers: 48 of 48 training records have one, checked 'numeric'");
    expect(clean.stdout).toMatch(/prompt tokens: +p50 \d+, p90 \d+, p99 \d+, max \d+/);
  }, 120_000);

  let reference: Awaited<ReturnType<typeof runDigest>>;

  it('trains on the real workflow and evaluates with ROUGE, accuracy and pass@k', async () => {
    const { result } = await trainWith('own');
    expect(result.steps).toBe(TOTAL);
    const final = await readEvaluation(await openBlobStore(store), 'own', TOTAL);
    expect(Object.keys(final!.metrics).sort()).toEqual(['accuracy', 'answerWords', 'lengthRatio', 'malformed', 'pass@1', 'pass@2', 'rouge1F1', 'rouge2F1', 'rougeLF1']);
    for (const value of Object.values(final!.metrics)) expect(Number.isFinite(value)).toBe(true);
    reference = await runDigest(store, 'own', TOTAL);
  }, RUN_MS);

  it('ends byte-identical after its policy worker is SIGKILLed during a rollout and an update', async () => {
    const marks = await mkdtemp(join(tmpdir(), 'dro-own-marks-'));
    try {
      const run = await trainWith('own-killed', { DRO_FAULT: 'rollout@2,update@3', DRO_FAULT_MARK: join(marks, 'own') });
      expect(run.restarts).toBe(2);
      expect(run.result.repins).toBeGreaterThanOrEqual(2);
      expect(await runDigest(store, 'own-killed', TOTAL)).toEqual(reference);
    } finally {
      await rm(marks, { recursive: true, force: true });
    }
  }, RUN_MS);
});

// The example's config is the one the README walks through (from the repository root, SmolLM2 fetched):
// it must stay valid and its data clean under SmolLM2's tokenizer and chat template.
it('examples/own-data/config.yaml passes `dro data check`', async () => {
  await ensureSmolLM2();
  const check = await droIn(ROOT, 'data', 'check', '--config', join(EXAMPLE, 'config.yaml'));
  expect(check.stderr).toBe('');
  expect(check.code).toBe(0);
  expect(check.stdout).toContain('prompts through its chat template');
  expect(check.stdout).toContain('no problems');
}, 300_000);
