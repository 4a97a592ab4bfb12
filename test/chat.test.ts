// `dro chat` and `dro model generate --text` end to end. A real run's checkpoints (one DRO step through the
// activities, no Temporal, on a directory store): `dro chat --run` prints exactly what the engine generates
// from the checkpoint's weights for the prompt the run itself would write (its runData encoding), one reply
// with --text or one per line of stdin; the exported model directory (no tokenizer.json: the byte tokenizer)
// talks the same; a model with a chat template gets the whole conversation through it; the run's checkpoint
// read from S3 answers as from the directory; usage mistakes are one line and exit 1.
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities/index.js';
import { PolicyHost } from '../activities/policy-host.js';
import { runData } from '../activities/run-data.js';
import type { RunRef } from '../activities/types.js';
import { checkpointParameters, exportCheckpointModel, readRunCheckpoint } from '../cli/checkpoint-model.js';
import { visibleReply } from '../cli/commands/chat.js';
import { ByteTokenizer, encodeParameters, initParameters, loadModelTokenizer, parseModelConfig, PolicyEngine, saveModelDir, type ChatMessage, type ModelConfig, type Tokenizer } from '../engine/index.js';
import { openBlobStore } from '../storage/open.js';
import { DEFAULT_INIT_MODEL } from '../dro/config.js';
import { uniqueS3Uri } from './services-env.js';
import { runRefOf, stepThroughActivities, tinyRunConfig } from './training-harness.js';

const DRO = join(import.meta.dirname, '..', 'bin', 'dro');
const FIXTURE = join(import.meta.dirname, '..', 'engine', 'tokenizer', 'fixtures', 'smollm2');
const GREEDY = ['--temperature', '0', '--max-new-tokens', '8', '--show-reasoning'];

let dir: string;
let storeUri: string;
let run: RunRef;
const bytes = new ByteTokenizer();

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `bin/dro` with `args`, stdin `input` (closed at its end), without blocking the test process. */
function dro(args: string[], input = ''): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(DRO, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input);
  });
}

function ok(r: Ran): string {
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** The engine's reply to each prompt, greedy or sampled with `dro chat`'s key for turn i, to its end-of-sequence token. */
async function replies(modelConfig: ModelConfig, params: ReadonlyMap<string, Float32Array>, tokenizer: Tokenizer, prompts: number[][], sampling: { temperature: number; seed?: number; maxNewTokens?: number } = { temperature: 0 }): Promise<string[]> {
  const engine = PolicyEngine.fromParameters(modelConfig, params, { intraOpThreads: 1 });
  try {
    const texts: string[] = [];
    for (const [i, promptIds] of prompts.entries()) {
      const options = { temperature: sampling.temperature, topP: 1, topK: 0, maxNewTokens: sampling.maxNewTokens ?? 8, stopTokenIds: [tokenizer.special.eos!], stopSequences: [] };
      const [result] = await engine.generate([{ promptIds, key: { seed: sampling.seed ?? 0, step: 0, exampleId: 'chat', sampleIndex: i } }], options);
      texts.push(tokenizer.decode(result!.ids, { skipSpecialTokens: true }));
    }
    return texts;
  } finally {
    await engine.release();
  }
}

/** Checkpoint `step` of the run as the engine's reply to `texts`, each encoded by the run's own prompt encoding. */
async function runReplies(step: number, texts: string[], sampling?: { temperature: number; seed?: number; maxNewTokens?: number }): Promise<string[]> {
  const checkpoint = await readRunCheckpoint(storeUri, run.runId, step);
  const data = await runData(run.config, run.configHash);
  const prompts = texts.map((t) => data.promptTextIds(t));
  // The run's prompts: <bos>, the text's bytes, <sep>.
  expect(prompts[0]).toEqual([256, ...new TextEncoder().encode(texts[0]), 259]);
  return replies(checkpoint.modelConfig, await checkpointParameters(checkpoint), data.tokenizer, prompts, sampling);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-chat-'));
  storeUri = join(dir, 'store');
  run = runRefOf(
    'chat-run',
    tinyRunConfig(storeUri, {
      seed: 5,
      // Weights initialised wide enough that what the model writes depends on its prompt and on the update.
      model: { intraOpThreads: 1, init: { ...DEFAULT_INIT_MODEL, initializer_range: 0.3 } },
      rollout: { promptsPerStep: 1, groupSize: 2, maxNewTokens: 8, batchSequences: 2 },
      optimizer: { learningRate: 1e-2 },
      // The tiny model's chains all run out of tokens: they train anyway, so the step changes the weights.
      dro: { maskTruncated: false },
      sft: { steps: 0 },
      schedule: { totalSteps: 1 },
      checkpoint: { every: 1 },
      filtering: { enabled: false },
      evaluation: { examples: 1, maxNewTokens: 4, baseAndFinal: false },
    }),
  );
  const host = new PolicyHost('chat-test');
  try {
    const acts = createActivities({ host });
    await acts.loadPolicy(run);
    await stepThroughActivities(acts, run, { checkpointBase: true });
  } finally {
    await host.shutdown();
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("dro chat --run: a run's checkpoint from its store", () => {
  let reply: string;

  it('--text prints the reply the engine generates from the latest checkpoint for the prompt the run would write', async () => {
    const [expected] = await runReplies(1, ['hi']);
    reply = ok(await dro(['chat', '--run', run.runId, '--store', storeUri, '--text', 'hi', ...GREEDY]));
    expect(reply).toBe(`${expected}\n`);
  });

  it('--step picks the checkpoint, and --seed with --temperature samples as the engine does with that seed', async () => {
    const sampling = { temperature: 1, seed: 9, maxNewTokens: 6 };
    const [expected] = await runReplies(0, ['what is 12+34?'], sampling);
    expect(await runReplies(1, ['what is 12+34?'], sampling)).not.toEqual([expected]);
    const r = await dro(['chat', '--run', run.runId, '--store', storeUri, '--step', '0', '--text', 'what is 12+34?', '--temperature', '1', '--seed', '9', '--max-new-tokens', '6', '--show-reasoning']);
    expect(ok(r)).toBe(`${expected}\n`);
  });

  it('without --text replies to each line of stdin (each a fresh prompt: the byte tokenizer has no chat template) and exits 0 at its end', async () => {
    const lines = ['hello there', 'what is 2+3?'];
    const expected = await runReplies(1, lines);
    const r = await dro(['chat', '--run', run.runId, '--store', storeUri, ...GREEDY], `${lines.join('\n')}\n\n`);
    expect(ok(r)).toBe(expected.map((t) => `${t}\n`).join(''));
    expect(r.stderr).toContain(`talking to run ${run.runId}, checkpoint 1, each message alone: the byte tokenizer has no chat template`);
  });

  it('the exported model directory (no tokenizer.json) talks the same through the byte tokenizer, and says so', async () => {
    const exported = join(dir, 'exported');
    await exportCheckpointModel(storeUri, run.runId, 'latest', exported, { dtype: 'float32', merged: false });
    const r = await dro(['chat', '--model', exported, '--text', 'hi', ...GREEDY]);
    expect(ok(r)).toBe(reply);
    expect(r.stderr).toContain(`${exported} has no tokenizer.json: using the byte tokenizer`);
  });

  it('reads the checkpoint from an S3 store as from a directory', async () => {
    const s3 = uniqueS3Uri('chat');
    const from = await openBlobStore(storeUri);
    const to = await openBlobStore(s3);
    try {
      for (const blob of await from.list(`${run.runId}/`)) await to.put(blob.key, await from.get(blob.key));
      expect(ok(await dro(['chat', '--run', run.runId, '--store', s3, '--text', 'hi', ...GREEDY]))).toBe(reply);
    } finally {
      for (const blob of await to.list(`${run.runId}/`)) await to.delete(blob.key);
      await Promise.all([from.close(), to.close()]);
    }
  });
});

describe('dro model generate --text', () => {
  it('encodes the text with the model tokenizer and agrees with --ids of the same ids; prints the continuation as text', async () => {
    const exported = join(dir, 'exported');
    const [textRun, idsRun] = await Promise.all([
      dro(['model', 'generate', '--model', exported, '--text', 'hi there', '--temperature', '0', '--max-new-tokens', '8', '--json']),
      dro(['model', 'generate', '--model', exported, '--ids', [...new TextEncoder().encode('hi there')].join(','), '--stop', String(bytes.special.eos), '--temperature', '0', '--max-new-tokens', '8', '--json']),
    ]);
    const byText = JSON.parse(ok(textRun)) as { promptIds: number[]; ids: number[]; logprobs: number[]; truncated: boolean; text: string };
    const byIds = JSON.parse(ok(idsRun)) as { ids: number[]; logprobs: number[]; truncated: boolean };
    expect(byText.promptIds).toEqual([...new TextEncoder().encode('hi there')]);
    expect(byText.ids.length).toBeGreaterThan(0);
    expect({ ids: byText.ids, logprobs: byText.logprobs, truncated: byText.truncated }).toEqual(byIds);
    expect(byText.text).toBe(bytes.decode(byText.ids, { skipSpecialTokens: true }));
    const plain = await dro(['model', 'generate', '--model', exported, '--text', 'hi there', '--temperature', '0', '--max-new-tokens', '8']);
    expect(ok(plain)).toBe(`${byText.text}\n`);
  });
});

describe('a model with a chat template', () => {
  let modelDir: string;
  let tokenizer: Tokenizer;
  let modelConfig: ModelConfig;
  let params: Map<string, Float32Array>;
  const encode = (messages: ChatMessage[]) => tokenizer.encode(tokenizer.applyChatTemplate!(messages, { addGenerationPrompt: true }));

  beforeAll(async () => {
    modelDir = join(dir, 'templated');
    // initializer_range 0.3: wide enough weights that the replies depend on the prompt.
    modelConfig = parseModelConfig({ model_type: 'llama', vocab_size: 1280, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true, initializer_range: 0.3 }, 'chat test model');
    params = initParameters(modelConfig, 4);
    await saveModelDir(modelDir, modelConfig, encodeParameters(modelConfig, params));
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(FIXTURE, file), join(modelDir, file));
    tokenizer = await loadModelTokenizer(modelDir);
  });

  it('--text sends the message through the template, with the assistant prompt after it', async () => {
    const ids = encode([{ role: 'user', content: 'hi' }]);
    expect(tokenizer.decode(ids)).toContain('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    const [expected] = await replies(modelConfig, params, tokenizer, [ids]);
    const [r, generated, tokenized] = await Promise.all([
      dro(['chat', '--model', modelDir, '--text', 'hi', ...GREEDY]),
      dro(['model', 'generate', '--model', modelDir, '--text', 'hi', '--chat', '--temperature', '0', '--max-new-tokens', '8', '--json']),
      dro(['model', 'tokenize', '--model', modelDir, '--text', 'hi', '--chat', '--json']),
    ]);
    expect(ok(r)).toBe(`${expected}\n`);
    expect(r.stderr).not.toContain('byte tokenizer');
    // generate --text --chat: the ids tokenize --chat prints, the reply chat prints.
    const byText = JSON.parse(ok(generated)) as { promptIds: number[]; text: string };
    expect(byText.promptIds).toEqual(ids);
    expect((JSON.parse(ok(tokenized)) as { ids: number[] }).ids).toEqual(ids);
    expect(byText.text).toBe(expected);
  });

  it('a conversation on stdin is the whole history through the template each turn, after --system', async () => {
    const system: ChatMessage = { role: 'system', content: 'Be brief.' };
    const [first] = await replies(modelConfig, params, tokenizer, [encode([system, { role: 'user', content: 'hello' }])]);
    const secondPrompt = encode([system, { role: 'user', content: 'hello' }, { role: 'assistant', content: first! }, { role: 'user', content: 'and then?' }]);
    const [second] = await replies(modelConfig, params, tokenizer, [secondPrompt]);
    // Without the history the second reply would be another one.
    expect(await replies(modelConfig, params, tokenizer, [encode([system, { role: 'user', content: 'and then?' }])])).not.toEqual([second]);
    const r = await dro(['chat', '--model', modelDir, '--system', 'Be brief.', ...GREEDY], 'hello\nand then?\n');
    expect(ok(r)).toBe(`${first}\n${second}\n`);
    expect(r.stderr).toContain(`talking to ${modelDir}, through its chat template`);
  });
});

describe('usage mistakes and errors', () => {
  it('are one line on stderr (plus a --help hint for usage) and exit 1', async () => {
    const exported = join(dir, 'exported');
    const cases: [string[], string, boolean][] = [
      [['chat', '--run', run.runId, '--model', exported, '--text', 'hi'], 'dro: give --run <id> or --model <path>, not both', true],
      [['chat', '--text', 'hi'], 'dro: give --run <id> (a run\'s checkpoint) or --model <path> (a model directory or .gguf file)', true],
      [['chat', '--model', exported, '--step', '1', '--text', 'hi'], 'dro: --step is for --run', true],
      [['chat', '--run', 'no-such-run', '--store', storeUri, '--text', 'hi'], `dro: run no-such-run has no valid checkpoint in ${storeUri}`, false],
      [['chat', '--model', exported, '--system', 'Be brief.', '--text', 'hi'], `dro: --system: ${exported} has no chat template (the byte tokenizer)`, true],
      [['model', 'generate', '--model', exported, '--ids', '1', '--text', 'hi', '--max-new-tokens', '2'], 'dro: give exactly one of --ids <ids> or --text <text>', true],
    ];
    const results = await Promise.all(cases.map(([args]) => dro(args)));
    for (const [i, [args, message, usage]] of cases.entries()) {
      const r = results[i]!;
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout, args.join(' ')).toBe('');
      const lines = r.stderr.trimEnd().split('\n').filter((l) => !l.includes('has no tokenizer.json: using the byte tokenizer'));
      expect(lines[0], args.join(' ')).toContain(message);
      expect(lines.slice(1), args.join(' ')).toEqual(usage ? [expect.stringMatching(/^run `dro( model)? [a-z]+ --help` for usage$/)] : []);
    }
  });
});

it('shows the answer after </think> unless --show-reasoning, and nothing of a reasoning that never closed', () => {
  expect(visibleReply('<think>2+3 is 5</think> 5', false)).toEqual({ text: '5' });
  expect(visibleReply('<think>2+3 is 5</think> 5', true)).toEqual({ text: '<think>2+3 is 5</think> 5' });
  expect(visibleReply('no tags at all', false)).toEqual({ text: 'no tags at all' });
  const unclosed = visibleReply('<think>still going', false);
  expect(unclosed.text).toBe('');
  expect(unclosed.note).toContain('--show-reasoning');
});
