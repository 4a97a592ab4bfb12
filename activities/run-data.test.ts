// The run's data as the workers load it and as `dro data check` reports it: jsonl records through the chat
// template or not (data.jsonl.chat, system), every unusable record by file and line whichever stage finds it,
// token-length percentiles, and a worker refusing a jsonl file that went bad after the check.
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfigInput } from '../dro/config.js';
import { loadModelTokenizer } from '../engine/index.js';
import { FORMAT_INSTRUCTION } from '../datasets/task.js';
import { checkRunData, runData } from './run-data.js';

const FIXTURE = join(import.meta.dirname, '..', 'engine', 'tokenizer', 'fixtures', 'smollm2');
let dir: string;
let model: string;
let train: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'run-data-'));
  // A model directory whose tokenizer (with a chat template) is the SmolLM2-shaped fixture; the check reads no weights.
  model = join(dir, 'model');
  await mkdir(model);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(FIXTURE, f), join(model, f));
  await writeFile(join(model, 'config.json'), JSON.stringify({ model_type: 'llama', vocab_size: 1280, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 512 }));
  train = join(dir, 'train.jsonl');
  const long = 'word '.repeat(300);
  await writeFile(
    train,
    [
      { prompt: 'What is two plus two?', reference: 'Two plus two is four.', answer: '4' },
      { prompt: long, reference: 'Too long a prompt.' },
      { prompt: 'Short.', reference: long },
      { prompt: 'Name a colour.', reference: 'Blue is a colour.' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n',
  );
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const config = (input: RunConfigInput = {}) =>
  parseRunConfig({ ...input, model: { path: model, ...input.model }, data: { task: 'jsonl', trainPath: train, maxPromptTokens: 200, maxReferenceTokens: 100, ...input.data } });

describe('checkRunData', () => {
  it('reports counts, lengths and the records over the budgets by file and line', async () => {
    const check = await checkRunData(config());
    expect(check.chat).toBe(true);
    expect(check.train.usable).toBe(2);
    expect(check.problems.map((p) => [p.file, p.line, p.field])).toEqual([
      [train, 2, 'prompt'],
      [train, 3, 'reference'],
    ]);
    expect(check.problems[0]!.message).toMatch(/^prompt has \d+ tokens, more than data.maxPromptTokens 200$/);
    expect(check.train.prompt!.max).toBeGreaterThanOrEqual(check.train.prompt!.p50);
    expect(check.answers).toEqual({ checked: 1, of: 2, check: 'exact' });
    expect(check.warnings.join()).toContain('no data.evalPath');
  });

  it("puts prompts through the chat template with the system message, or not, as data.jsonl.chat says", async () => {
    const tokenizer = await loadModelTokenizer(model);
    // Budgets every record fits, so the worker's load succeeds.
    const roomy = { maxPromptTokens: 4000, maxReferenceTokens: 4000 };
    const prompt = `What is two plus two?\n\n${FORMAT_INSTRUCTION}`;
    const chat = await runData(config({ data: { ...roomy, jsonl: { system: 'Be brief.' } } }), 'chat');
    const example = chat.train.values().next().value!;
    const rendered = tokenizer.applyChatTemplate!(
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: prompt },
      ],
      { addGenerationPrompt: true },
    );
    expect(chat.promptIds(example)).toEqual(tokenizer.encode(rendered));
    const plain = await runData(config({ data: { ...roomy, jsonl: { chat: false } } }), 'plain');
    expect(plain.promptIds(example)).toEqual(tokenizer.encode(prompt, { addSpecialTokens: true }));
    expect(plain.promptIds(example)).not.toEqual(chat.promptIds(example));
  });

  it('a worker refuses a jsonl file with unusable records instead of training on part of it', async () => {
    await expect(runData(config(), 'worker')).rejects.toThrow(/data: 2 bad record\(s\):\n.*train\.jsonl:2: prompt has/);
  });

  it("refuses data.jsonl.chat true for a tokenizer without a chat template", async () => {
    await expect(checkRunData(parseRunConfig({ data: { task: 'jsonl', trainPath: train, jsonl: { chat: true } } }))).rejects.toThrow("data.jsonl.chat is true but the model's tokenizer has no chat template");
  });
});
