// `dro model merge` in process: a trained adapter merged into its base scores like base + adapters,
// keeps the tokenizer files, and bad adapters are refused naming the file or tensor.
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniform } from '../../dro/random.js';
import { adapterConfigJson, type LoraConfig } from '../../engine/model/lora.js';
import { loadModelDir, saveModelDir } from '../../engine/model/model-dir.js';
import { initParameters } from '../../engine/model/params.js';
import { PolicyEngine } from '../../engine/policy.js';
import { engineOptions, tinyModelConfig, trainStep, trainStepOptions } from '../../engine/testing/fixtures.js';
import { decodeSafetensors, encodeSafetensors, tensorFrom } from '../../engine/weights/safetensors.js';
import { registerMergeCommand } from './model-merge.js';
import { UsageError } from '../options.js';
import { parseCommandLine } from '../program.js';

const config = tinyModelConfig({}, 'merge test config');
const lora: LoraConfig = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'up_proj', 'down_proj'] };

let dir: string;
let adapted: PolicyEngine;
const requests = [0, 1, 2].map((i) => ({ ids: Array.from({ length: 6 + i }, (_, t) => Math.floor(uniform(['merge-ids', i, t]) * 13)), targetStart: 2 }));

async function merge(...args: string[]): Promise<number> {
  const program = new Command('dro');
  registerMergeCommand(program.command('model'));
  return parseCommandLine(program, ['model', 'merge', ...args]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-merge-'));
  const params = initParameters(config, 3);
  await saveModelDir(join(dir, 'base'), config, PolicyEngine.fromParameters(config, params, engineOptions()).exportParameters());
  await writeFile(join(dir, 'base', 'tokenizer.json'), '{"model": "a tokenizer"}\n');
  adapted = PolicyEngine.fromParameters(config, params, engineOptions({ lora: { ...lora, seed: 4 } }));
  for (let step = 0; step < 3; step++) {
    const old = await adapted.score(requests);
    const sequences = requests.map((r, i) => ({ ids: r.ids, completionStart: r.targetStart, advantage: [1, -0.5, 0.3][i]!, oldLogprobs: old[i]!.logprobs, referencePolicyLogprobs: old[i]!.logprobs }));
    await trainStep(adapted, sequences, trainStepOptions('grpo', { learningRate: 3e-2, maxCompletionLength: 8 }));
  }
  await mkdir(join(dir, 'adapter'));
  await writeFile(join(dir, 'adapter', 'adapter_model.safetensors'), adapted.exportParameters());
  await writeFile(join(dir, 'adapter', 'adapter_config.json'), adapterConfigJson(lora, join(dir, 'base')));
});

afterAll(async () => {
  await adapted?.release();
  await rm(dir, { recursive: true, force: true });
});

describe('dro model merge', () => {
  it('writes a model directory that scores within 1e-4 of base + adapters, with the tokenizer files', async () => {
    expect(await merge('--model', join(dir, 'base'), '--adapter', join(dir, 'adapter', 'adapter_model.safetensors'), '--out', join(dir, 'merged'))).toBe(0);
    const { config: mergedConfig, params } = await loadModelDir(join(dir, 'merged'));
    expect(mergedConfig).toEqual(config);
    const engine = PolicyEngine.fromParameters(mergedConfig, params, engineOptions());
    try {
      const expected = await adapted.score(requests);
      const got = await engine.score(requests);
      const diff = Math.max(...got.flatMap((r, i) => r.logprobs.map((lp, t) => Math.abs(lp - expected[i]!.logprobs[t]!))));
      const base = await PolicyEngine.fromParameters(config, initParameters(config, 3), engineOptions()).score(requests);
      const moved = Math.max(...base.flatMap((r, i) => r.logprobs.map((lp, t) => Math.abs(lp - expected[i]!.logprobs[t]!))));
      console.log(`merged model vs base + adapters: max |Δ log-prob| ${diff.toExponential(2)} (the adapters moved log-probs by up to ${moved.toFixed(3)})`);
      expect(moved).toBeGreaterThan(1e-2);
      expect(diff).toBeLessThanOrEqual(1e-4);
    } finally {
      await engine.release();
    }
    expect(await readFile(join(dir, 'merged', 'tokenizer.json'), 'utf8')).toBe('{"model": "a tokenizer"}\n');
    // The adapter's directory works as well as its file; an existing --out is never overwritten.
    expect(await merge('--model', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', join(dir, 'merged-2'))).toBe(0);
    expect(Buffer.compare(await readFile(join(dir, 'merged-2', 'model.safetensors')), await readFile(join(dir, 'merged', 'model.safetensors')))).toBe(0);
    await expect(merge('--model', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', join(dir, 'merged'))).rejects.toThrow(/already exists/);
  });

  it('refuses a misshaped or missing tensor by name, a missing adapter_config.json, and a missing flag', async () => {
    const file = decodeSafetensors(adapted.exportParameters());
    const name = 'base_model.model.model.layers.1.mlp.up_proj.lora_B.weight';
    const bad = new Map(file.tensors);
    bad.set(name, tensorFrom(new Float32Array(24 * 2), [24, 2]));
    await mkdir(join(dir, 'bad'));
    await writeFile(join(dir, 'bad', 'adapter_model.safetensors'), encodeSafetensors(bad));
    await writeFile(join(dir, 'bad', 'adapter_config.json'), adapterConfigJson(lora, null));
    await expect(merge('--model', join(dir, 'base'), '--adapter', join(dir, 'bad'), '--out', join(dir, 'never'))).rejects.toThrow(`tensor ${name} has shape [24, 2], the model needs [24, 4]`);
    // The config names a module the file has no tensors for.
    await writeFile(join(dir, 'bad', 'adapter_model.safetensors'), adapted.exportParameters());
    await writeFile(join(dir, 'bad', 'adapter_config.json'), adapterConfigJson({ ...lora, targets: [...lora.targets, 'k_proj'] }, null));
    await expect(merge('--model', join(dir, 'base'), '--adapter', join(dir, 'bad'), '--out', join(dir, 'never'))).rejects.toThrow(/tensor base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight is missing/);
    await rm(join(dir, 'bad', 'adapter_config.json'));
    await expect(merge('--model', join(dir, 'base'), '--adapter', join(dir, 'bad'), '--out', join(dir, 'never'))).rejects.toThrow(/bad\/adapter_config\.json/);
    await expect(merge('--model', join(dir, 'base'), '--out', join(dir, 'never'))).rejects.toThrow(new UsageError("required option '--adapter <path>' not specified", 'dro model merge'));
    await expect(readFile(join(dir, 'never', 'config.json'))).rejects.toThrow(/ENOENT/);
  });
});
