// The `dro model` commands end to end: init writes a Hugging Face-style model directory, score prints the
// log-probs and ranks the slow reference forward pass computes for the same weights.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadModelDir } from '../engine/model/model-dir.js';
import { PolicyEngine } from '../engine/policy.js';
import { referenceLogprobsAndRanks } from './reference/llama-forward.js';

const dro = join(import.meta.dirname, '..', 'bin', 'dro');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = (...args: string[]) => spawnSync(dro, args, { encoding: 'utf8' });

it('model init writes config.json and model.safetensors; model score matches the reference', async () => {
  const config = { vocab_size: 32, hidden_size: 16, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const init = run('model', 'init', '--config', join(dir, 'config.json'), '--seed', '5', '--out', join(dir, 'model'));
  expect(init.stderr).toBe('');
  expect(init.status).toBe(0);
  const written = JSON.parse(await readFile(join(dir, 'model', 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(written).toMatchObject({ ...config, architectures: ['LlamaForCausalLM'], model_type: 'llama' });

  const ids = [3, 17, 4, 9, 31, 0];
  const score = run('model', 'score', '--model', join(dir, 'model'), '--ids', ids.join(','), '--json');
  expect(score.status).toBe(0);
  const printed = JSON.parse(score.stdout) as { logprobs: number[]; ranks: number[] };
  const model = await loadModelDir(join(dir, 'model'));
  const reference = referenceLogprobsAndRanks(model.config, model.params, ids, 1);
  expect(printed.ranks).toEqual(reference.ranks);
  printed.logprobs.forEach((lp, i) => expect(Math.abs(lp - reference.logprobs[i]!)).toBeLessThanOrEqual(1e-4));

  // generate: greedy output equals the engine's, with the documented JSON shape.
  const gen = run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3,17,4', '--max-new-tokens', '5', '--temperature', '0', '--json');
  expect(gen.status).toBe(0);
  const generated = JSON.parse(gen.stdout) as { ids: number[]; logprobs: number[]; truncated: boolean };
  const engine = PolicyEngine.fromParameters(model.config, model.params);
  const [expected] = await engine.generate([{ promptIds: [3, 17, 4], key: { seed: 0, step: 0, exampleId: 'cli', sampleIndex: 0 } }], { temperature: 0, maxNewTokens: 5 });
  await engine.release();
  expect(generated).toEqual({ ids: expected!.ids, logprobs: expected!.logprobs, truncated: true });
  const sampled = (seed: string) => run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3,17,4', '--max-new-tokens', '8', '--seed', seed, '--json').stdout;
  expect(sampled('11')).toBe(sampled('11'));
  expect(run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3', '--max-new-tokens', '0').stderr).toContain('--max-new-tokens must be an integer ≥ 1');

  // The same seed writes the same bytes.
  run('model', 'init', '--config', join(dir, 'config.json'), '--seed', '5', '--out', join(dir, 'again'));
  expect(Buffer.compare(await readFile(join(dir, 'model', 'model.safetensors')), await readFile(join(dir, 'again', 'model.safetensors')))).toBe(0);
});

it('reports bad input clearly and exits 1', async () => {
  const missing = run('model', 'score', '--model', join(dir, 'nowhere'), '--ids', '1,2');
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain(`cannot read ${join(dir, 'nowhere', 'config.json')}`);
  const badIds = run('model', 'score', '--model', join(dir, 'model'), '--ids', '1,,2');
  expect(badIds.stderr).toContain('--ids entry 1 ("") is not a token id');
  const outOfVocab = run('model', 'score', '--model', join(dir, 'model'), '--ids', '1,99');
  expect(outOfVocab.stderr).toContain('token id 99 at sequence 0, position 1 is outside the vocabulary (0..31)');
  await writeFile(join(dir, 'bad.json'), JSON.stringify({ vocab_size: 0, hidden_size: 16 }));
  const badConfig = run('model', 'init', '--config', join(dir, 'bad.json'), '--seed', '1', '--out', join(dir, 'x'));
  expect(badConfig.status).toBe(1);
  expect(badConfig.stderr).toMatch(/vocab_size/);
  const unknown = run('model', 'train');
  expect(unknown.stderr).toContain('dro: unknown command "model train"');
});
