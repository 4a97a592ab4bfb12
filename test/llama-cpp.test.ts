// The cross-check against llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU binary) on a real pretrained
// model, SmolLM2-135M-Instruct (Q4_1 GGUF, fetched on first use: a failed fetch fails these tests with the
// reason). Our imported tokenizer must give exactly llama.cpp's ids; our imported model must give nearly
// its teacher-forced log-probabilities and greedy tokens on the quantised file (llama.cpp quantises
// activations in Q4_1 matmuls, we compute in float32 on the dequantised weights), and the same to within
// float32 rounding on an F32 copy of the file with llama.cpp's KV cache in F32, where both compute on
// identical weights.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, loadModelTokenizer } from '../engine/model/model-source.js';
import { PolicyEngine } from '../engine/policy.js';
import type { Tokenizer } from '../engine/tokenizer/tokenizer.js';
import { openLlamaCpp, writeF32Copy, type LlamaCppModel } from '../scripts/models/llama-cpp.js';
import { ensureSmolLM2 } from '../scripts/models/smollm2.js';

const run = promisify(execFile);
const DRO = join(import.meta.dirname, '..', 'bin', 'dro');

const TEXTS = [
  'The capital of France is Paris. The capital of Germany is',
  'Der schnelle braune Fuchs springt über den faulen Hund. Ça marche très bien, merci!',
  '東京は日本の首都です。人口はとても多いです。',
  'Привет, как дела? Всё хорошо.',
  'def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n',
  'Emoji 👩🏽‍💻 and tabs\tand CRLF\r\nlines, numbers 1234567 and 3.14159.',
];
const CHAT = 'Rewrite this sentence more concisely: The results that we obtained were in fact quite surprising to us.';
const GREEDY_TOKENS = 16;
/**
 * One comparison scores every prompt position (about 225) and generates GREEDY_TOKENS from each of the 7
 * prompts, in llama.cpp and in our engine: 108 s and 141 s on 2 cores shared with other suites (load 7),
 * so the default 120 s failed there. Ten minutes leaves room for a busier machine.
 */
const COMPARE_MS = 600_000;

let gguf: string;
let dir: string;
let tokenizer: Tokenizer;
let prompts: number[][];

beforeAll(async () => {
  gguf = await ensureSmolLM2();
  dir = await mkdtemp(join(tmpdir(), 'llama-cpp-'));
  tokenizer = await loadModelTokenizer(gguf);
  const chat = tokenizer.applyChatTemplate!([{ role: 'user', content: CHAT }], { addGenerationPrompt: true });
  prompts = [...TEXTS, chat].map((t) => tokenizer.encode(t));
}, 300_000);
afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

interface Comparison {
  meanAbs: number;
  maxAbs: number;
  top1Agree: number;
  positions: number;
  greedy: { ours: number[]; theirs: number[]; firstDiff: number; gapAtDiff: number }[];
}

/** Our engine against llama.cpp on every prompt: teacher-forced log-probs, top-1 tokens, greedy continuations. */
async function compare(path: string, llama: LlamaCppModel): Promise<Comparison> {
  const { config, params } = await loadModel(path);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: 2 });
  try {
    let sum = 0;
    let maxAbs = 0;
    let top1Agree = 0;
    let positions = 0;
    const greedy: Comparison['greedy'] = [];
    for (const ids of prompts) {
      const theirs = await llama.teacherForced(ids);
      const [ours] = await engine.score([{ ids, targetStart: 1 }]);
      ours!.logprobs.forEach((lp, t) => {
        const d = Math.abs(lp - theirs.logprobs[t]!);
        sum += d;
        maxAbs = Math.max(maxAbs, d);
      });
      // Our rank of llama.cpp's most likely token at every position.
      const ranks = await engine.score(theirs.top1.map((token, t) => ({ ids: [...ids.slice(0, t + 1), token], targetStart: t + 1 })));
      top1Agree += ranks.filter((r) => r.ranks[0] === 1).length;
      positions += ranks.length;

      const llamaTokens = await llama.greedy(ids, GREEDY_TOKENS);
      const [gen] = await engine.generate([{ promptIds: ids, key: { seed: 0, step: 0, exampleId: 'greedy', sampleIndex: 0 } }], { maxNewTokens: GREEDY_TOKENS, temperature: 0, topP: 1, topK: 0, stopTokenIds: [], stopSequences: [] });
      const firstDiff = gen!.ids.findIndex((id, i) => id !== llamaTokens[i]);
      let gapAtDiff = 0;
      if (firstDiff >= 0) {
        // How far below our choice llama.cpp's choice is, under our model: a near tie is rounding, a gap is a bug.
        const prefix = [...ids, ...gen!.ids.slice(0, firstDiff)];
        const [a, b] = await engine.score([{ ids: [...prefix, gen!.ids[firstDiff]!], targetStart: prefix.length }, { ids: [...prefix, llamaTokens[firstDiff]!], targetStart: prefix.length }]);
        gapAtDiff = a!.logprobs[0]! - b!.logprobs[0]!;
      }
      greedy.push({ ours: gen!.ids, theirs: llamaTokens, firstDiff, gapAtDiff });
    }
    return { meanAbs: sum / positions, maxAbs, top1Agree, positions, greedy };
  } finally {
    await engine.release();
  }
}

function report(label: string, c: Comparison): void {
  const same = c.greedy.filter((g) => g.firstDiff < 0).length;
  console.log(
    `${label}: log-prob |ours − llama.cpp| mean ${c.meanAbs.toFixed(5)}, max ${c.maxAbs.toFixed(5)} over ${c.positions} positions; top-1 agrees at ${c.top1Agree}/${c.positions}; ` +
      `greedy ${GREEDY_TOKENS} tokens identical on ${same}/${c.greedy.length} prompts (diverging at ${c.greedy.filter((g) => g.firstDiff >= 0).map((g) => `token ${g.firstDiff}, gap ${g.gapAtDiff.toFixed(3)}`).join('; ') || 'none'})`,
  );
}

describe('against llama.cpp on SmolLM2-135M-Instruct', () => {
  it('our tokenizer rebuilt from the GGUF gives exactly llama.cpp ids, for plain text and through the chat template', async () => {
    const llama = await openLlamaCpp(gguf);
    try {
      const chat = tokenizer.applyChatTemplate!([{ role: 'user', content: CHAT }], { addGenerationPrompt: true });
      for (const text of [...TEXTS, chat, '<|im_start|>system\nYou are helpful.<|im_end|>\n']) expect(tokenizer.encode(text), text).toEqual(llama.tokenize(text));
      expect(chat).toContain('<|im_start|>user\n');
    } finally {
      await llama.dispose();
    }
  });

  it('dro model import --gguf and dro model tokenize --chat give the same ids through the command line', async () => {
    const out = join(dir, 'imported');
    const imported = await run(DRO, ['model', 'import', '--gguf', gguf, '--out', out]);
    expect(imported.stdout).toMatch(/134,515,008 parameters in 272 tensors; 30 layers, 576 wide, vocabulary 49152/);
    const { stdout } = await run(DRO, ['model', 'tokenize', '--model', out, '--text', CHAT, '--chat', '--json']);
    expect((JSON.parse(stdout) as { ids: number[] }).ids).toEqual(prompts.at(-1));
    // A second import into the same directory is refused and changes nothing.
    await expect(run(DRO, ['model', 'import', '--gguf', gguf, '--out', out])).rejects.toThrow(/already exists: choose a new output directory/);
  });

  it('on the Q4_1 file: log-probs within quantisation error, the same top-1 token nearly everywhere, greedy tokens the same until a near tie', async () => {
    const llama = await openLlamaCpp(gguf);
    let c: Comparison;
    try {
      c = await compare(gguf, llama);
    } finally {
      await llama.dispose();
    }
    report('Q4_1', c);
    // Measured: mean 0.05–0.13 per prompt, max 0.65 (llama.cpp rounds activations to 8 bits in these matmuls).
    expect(c.meanAbs).toBeLessThan(0.2);
    expect(c.maxAbs).toBeLessThan(1.5);
    expect(c.top1Agree / c.positions).toBeGreaterThan(0.9);
    for (const g of c.greedy) {
      if (g.firstDiff >= 0) expect(g.gapAtDiff).toBeLessThan(0.25);
    }
    expect(c.greedy.filter((g) => g.firstDiff < 0).length).toBeGreaterThanOrEqual(3);
  }, COMPARE_MS);

  it('on an F32 copy of the file: the same computation to within float32 rounding', async () => {
    const f32 = join(dir, 'smollm2-f32.gguf');
    await writeF32Copy(gguf, f32);
    const llama = await openLlamaCpp(f32, { kvCache: 'F32' });
    let c: Comparison;
    try {
      c = await compare(f32, llama);
    } finally {
      await llama.dispose();
      await rm(f32, { force: true });
    }
    report('F32', c);
    // Measured: mean 1.2e-4, max 2.9e-4 nats over 225 positions (different summation orders, 30 layers).
    expect(c.maxAbs).toBeLessThan(2e-3);
    expect(c.top1Agree).toBe(c.positions);
    expect(c.greedy.every((g) => g.firstDiff < 0)).toBe(true);
  }, COMPARE_MS);
});
