// A LoRA run's checkpoints through the real activities (no Temporal): they hold the adapters in PEFT's
// layout, their optimizer state and the base's sha256, never the model; the base on disk is untouched;
// a restarted worker and an evaluation load the base from model.path and the adapters from the
// checkpoint; `dro checkpoints --export` writes a PEFT adapter directory that merges into a model scoring
// like base + adapters; a changed base is refused by name.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities/index.js';
import { PolicyHost, versionOf } from '../activities/policy-host.js';
import { checkpointState } from '../activities/records.js';
import type { LoopPosition, RunRef } from '../activities/types.js';
import { parseModelConfig } from '../engine/model/config.js';
import { mergeAdapterToDir } from '../engine/model/adapter-dir.js';
import { loadModelDir, saveModelDir } from '../engine/model/model-dir.js';
import { PolicyEngine } from '../engine/policy.js';
import { initParameters } from '../engine/model/params.js';
import { encodeParameters } from '../engine/model/state-files.js';
import { decodeSafetensors } from '../engine/weights/safetensors.js';
import { exportCheckpointModel } from '../cli/checkpoint-model.js';
import type { BlobStore } from '../storage/blob-store.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import { runRefOf, stepThroughActivities, tinyRunConfig } from './training-harness.js';

const MODEL = { model_type: 'llama', vocab_size: 260, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true };
const modelConfig = parseModelConfig(MODEL, 'LoRA checkpoint test model');

let dir: string;
let modelDir: string;
let store: BlobStore;
let run: RunRef;
const hosts: PolicyHost[] = [];
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function newHost() {
  const host = new PolicyHost('lora-queue');
  hosts.push(host);
  return { host, acts: createActivities({ host }) };
}

async function failsWith(promise: Promise<unknown>, type: string): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected an ApplicationFailure of type ${type}`).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).type, (err as Error).message).toBe(type);
  return (err as Error).message;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-lora-'));
  modelDir = join(dir, 'base');
  await saveModelDir(modelDir, modelConfig, encodeParameters(modelConfig, initParameters(modelConfig, 11)));
  const storeUri = join(dir, 'store');
  store = await openBlobStore(storeUri);
  const config = tinyRunConfig(storeUri, {
    seed: 3,
    model: { path: modelDir, tokenizer: 'byte', intraOpThreads: 1, loraRank: 4, loraAlpha: 8, loraTargets: ['q_proj', 'v_proj', 'down_proj'] },
    rollout: { groupSize: 3, maxNewTokens: 16, batchSequences: 6 },
    sft: { steps: 2, batchSize: 4 },
    optimizer: { learningRate: 1e-2 },
    schedule: { totalSteps: 2 },
    checkpoint: { every: 1, keepLast: 10 },
    filtering: { enabled: false },
    evaluation: { examples: 2, maxNewTokens: 8 },
  });
  run = runRefOf('lora', config);
});

afterAll(async () => {
  for (const host of hosts) await host.shutdown();
  await rm(dir, { recursive: true, force: true });
});

describe('a LoRA run through the activities', () => {
  const first = newHost();
  let position: LoopPosition;

  it('checkpoints the adapters in PEFT layout with their optimizer state and the base sha256, and leaves the base alone', async () => {
    const { acts, host } = first;
    expect((await acts.loadPolicy(run)).checkpoint).toBeNull();
    position = await stepThroughActivities(acts, run, { checkpointBase: true });
    const checkpoint = await loadCheckpoint(store, run.runId, 1);
    expect(Object.keys(checkpoint.files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors']);
    const adapterConfig = JSON.parse(new TextDecoder().decode(checkpoint.files['adapter_config.json'])) as Record<string, unknown>;
    expect(adapterConfig).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none', target_modules: ['q_proj', 'v_proj', 'down_proj'], base_model_name_or_path: modelDir });
    const adapters = decodeSafetensors(checkpoint.files['adapter_model.safetensors']!).tensors;
    expect(adapters.size).toBe(2 * 3 * 2);
    expect(adapters.get('base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight')?.shape).toEqual([4, 32]);
    expect(adapters.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')?.shape).toEqual([16, 4]);
    expect(adapters.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')?.shape).toEqual([4, 64]);
    const moments = [...decodeSafetensors(checkpoint.files['optimizer.safetensors']!).tensors.keys()];
    expect(moments.filter((k) => k !== 'optimizer.step').every((k) => /^optimizer\.adam_[mv]\.base_model\.model\..*\.lora_[AB]\.weight$/.test(k))).toBe(true);
    expect(moments).toHaveLength(2 * adapters.size + 1);
    // The base the adapters belong to is recorded, and training left its bytes alone.
    const baseFile = await readFile(join(modelDir, 'model.safetensors'));
    const engine = (await host.require(versionOf(run, 1))).engine;
    expect(sha(await engine.exportBaseParameters())).toBe(sha(baseFile));
    expect(checkpointState(checkpoint).loraBase).toEqual({ sha256: sha(baseFile), path: modelDir });
  });

  it('a restarted worker loads the base from model.path and the adapters from the checkpoint; an evaluation does too', async () => {
    const before = sha(await (await first.host.require(versionOf(run, 1))).engine.exportParameters());
    const restarted = newHost();
    expect((await restarted.acts.loadPolicy(run)).checkpoint).toEqual({ step: 1, position });
    expect(sha(await (await restarted.host.require(versionOf(run, 1))).engine.exportParameters())).toBe(before);
    const evaluated = await restarted.acts.runEvaluation({ runId: run.runId, store: run.config.checkpoint.store, step: 1 });
    expect(evaluated).toMatchObject({ step: 1, examples: 2 });
  });

  it('exports a checkpoint as a PEFT adapter directory that `dro model merge` folds into a model scoring like base + adapters', async () => {
    const out = join(dir, 'exported');
    const exportCheckpoint = (step: number | 'latest', to: string, merged = false) => exportCheckpointModel(run.config.checkpoint.store, run.runId, step, to, { dtype: 'float32', merged });
    expect(await exportCheckpoint('latest', out)).toEqual({ step: 1, files: ['TOKENIZER.md', 'adapter_config.json', 'adapter_model.safetensors', 'generation_config.json', 'state.json'] });
    const stored = await loadCheckpoint(store, run.runId, 1);
    expect(sha(await readFile(join(out, 'adapter_model.safetensors')))).toBe(sha(stored.files['adapter_model.safetensors']!));
    await expect(exportCheckpoint(1, out)).rejects.toThrow(/already exists/);
    await expect(exportCheckpoint(7, join(dir, 'none'))).rejects.toThrow(/cannot load checkpoint lora\/checkpoints\/00000007/);

    const merged = join(dir, 'merged');
    await mergeAdapterToDir(modelDir, out, merged);
    // --merged: the same merge, from the store and the run's model.path, to the same bytes.
    const mergedExport = join(dir, 'merged-export');
    expect((await exportCheckpoint(1, mergedExport, true)).files).toEqual(['TOKENIZER.md', 'config.json', 'generation_config.json', 'model.safetensors', 'state.json']);
    expect(sha(await readFile(join(mergedExport, 'model.safetensors')))).toBe(sha(await readFile(join(merged, 'model.safetensors'))));
    const adapted = (await first.host.require(versionOf(run, 1))).engine;
    const { config, params } = await loadModelDir(merged);
    const plain = PolicyEngine.fromParameters(config, params, { intraOpThreads: 1 });
    try {
      const request = { ids: [256, 3, 44, 17, 91, 5, 200, 12, 7], targetStart: 1 };
      const [a] = await adapted.score([request]);
      const [b] = await plain.score([request]);
      const moved = await (async () => {
        const base = await loadModelDir(modelDir);
        const e = PolicyEngine.fromParameters(base.config, base.params, { intraOpThreads: 1 });
        try {
          const [c] = await e.score([request]);
          return Math.max(...c!.logprobs.map((x, i) => Math.abs(x - a!.logprobs[i]!)));
        } finally {
          await e.release();
        }
      })();
      expect(moved).toBeGreaterThan(1e-3);
      for (let i = 0; i < a!.logprobs.length; i++) expect(Math.abs(a!.logprobs[i]! - b!.logprobs[i]!)).toBeLessThan(1e-4);
    } finally {
      await plain.release();
    }
  });

  it('refuses a checkpoint whose base changed, naming both digests', async () => {
    const original = await readFile(join(modelDir, 'model.safetensors'));
    await saveModelDir(modelDir, modelConfig, encodeParameters(modelConfig, initParameters(modelConfig, 12)));
    try {
      const message = await failsWith(newHost().acts.loadPolicy(run), 'InvalidConfig');
      expect(message).toMatch(new RegExp(`checkpoint 1 of run lora holds LoRA adapters trained on a base whose weights have sha256 ${sha(original).slice(0, 12)}, but model\\.path \\(.*\\) now gives weights with sha256 [0-9a-f]{12}`));
      await failsWith(createActivities().runEvaluation({ runId: run.runId, store: run.config.checkpoint.store, step: 0 }), 'InvalidConfig');
      await expect(exportCheckpointModel(run.config.checkpoint.store, run.runId, 1, join(dir, 'wrong-base'), { dtype: 'float32', merged: true })).rejects.toThrow(
        new RegExp(`is not the one run lora trained on \\(sha256 [0-9a-f]{12}…, the checkpoint recorded ${sha(original).slice(0, 12)}…\\)`),
      );
    } finally {
      await saveModelDir(modelDir, modelConfig, original);
    }
  });
});
