// `npm run bench:versus`: this engine and llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU binary) on
// the same GGUF (SmolLM2-135M-Instruct Q4_1) in one process: prefill and decode tokens/s at batch 1 and
// 16, greedy, the same real prompts and the same number of new tokens, and the ratio. We compute in
// float32 on the dequantised weights; llama.cpp computes on the Q4_1 blocks (and, with --f32, on an F32
// copy: the same arithmetic as ours). Checks that the machine is idle; figures are medians.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Token } from 'node-llama-cpp';
import { loadModel, loadModelTokenizer, PolicyEngine } from '../../engine/index.js';
import { integerOption, parseInteger, UsageError } from '../../cli/options.js';
import { listOption, runScript, scriptProgram } from '../lib/command-line.js';
import { median, reportIdle, secondsSince } from './machine.js';
import { openLlamaCpp, writeF32Copy, type LlamaCppModel } from '../models/llama-cpp.js';
import { ensureSmolLM2 } from '../models/smollm2.js';

const DETAILS = `
Both engines get the same prompts (--prompt tokens each, windows of a fixed English text under the
model's tokenizer, a different window per sequence) and generate --new-tokens greedy tokens per
sequence. Prefill tokens/s = batch × prompt tokens / the time to the first new token; decode tokens/s =
batch × (new tokens − 1) / the time from the first to the last new token. Medians of --runs after one
warm-up. --f32 adds llama.cpp on an F32 copy of the GGUF (KV cache in F32): the same weights and
precision as this engine. --json prints one JSON object.`;

const TEXT =
  'The committee met on Tuesday to review the proposal for the new library. Several members argued that the ' +
  'budget was too small for a building of that size, while others pointed out that the city had already set ' +
  'aside land near the river. After a long discussion, they agreed to ask an architect for two designs: one ' +
  'modest and one ambitious. The architect, a former student of the town, promised to deliver both within a ' +
  'month. Meanwhile, volunteers began collecting books from households across the region, and a local bakery ' +
  'offered to host reading evenings for children every Friday. By the end of the season, the project had ' +
  'become a matter of pride for the whole community, and even sceptics came to the opening ceremony.';

interface Figures {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  prefillRuns: number[];
  decodeRuns: number[];
}

function figures(prompts: number[][], newTokens: number, prefillSeconds: number[], decodeSeconds: number[]): Figures {
  const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
  const prefillRuns = prefillSeconds.map((s) => promptTokens / s);
  const decodeRuns = decodeSeconds.map((s) => (prompts.length * (newTokens - 1)) / s);
  return { prefillTokensPerSecond: median(prefillRuns), decodeTokensPerSecond: median(decodeRuns), prefillRuns, decodeRuns };
}

async function ours(engine: PolicyEngine, prompts: number[][], newTokens: number, runs: number): Promise<Figures> {
  const prefill: number[] = [];
  const decode: number[] = [];
  const requests = prompts.map((promptIds, b) => ({ promptIds, key: { seed: 0, step: 0, exampleId: `versus-${b}`, sampleIndex: 0 } }));
  for (let run = 0; run <= runs; run++) {
    let first: number | undefined;
    const start = process.hrtime.bigint();
    await engine.generate(requests, { maxNewTokens: newTokens, temperature: 0, topP: 1, topK: 0, stopTokenIds: [], stopSequences: [] }, {
      onProgress: () => {
        first ??= secondsSince(start);
      },
    });
    const total = secondsSince(start);
    if (run === 0) continue; // builds the sessions and grows the arena: a warm-up
    prefill.push(first!);
    decode.push(total - first!);
  }
  return figures(prompts, newTokens, prefill, decode);
}

async function theirs(llama: LlamaCppModel, prompts: number[][], newTokens: number, runs: number): Promise<Figures> {
  const prefill: number[] = [];
  const decode: number[] = [];
  const context = await llama.context(prompts.length, Math.max(...prompts.map((p) => p.length)) + newTokens + 8);
  const sequences = prompts.map(() => context.getSequence());
  const greedyNext = { generateNext: { token: true, options: { temperature: 0 } } } as const;
  /** One evaluation per sequence, issued together so node-llama-cpp batches them into one llama_decode. */
  const step = (inputs: number[][]): Promise<number[]> =>
    Promise.all(
      inputs.map(async (ids, i) => {
        const last = ids.length - 1;
        const out = await sequences[i]!.controlledEvaluate(ids.map((id, j) => (j === last ? [id as Token, greedyNext] : (id as Token))));
        const token = out[last]?.next.token;
        if (token === undefined || token === null) throw new Error('llama.cpp produced no token');
        return token;
      }),
    );
  try {
    for (let run = 0; run <= runs; run++) {
      for (const s of sequences) await s.clearHistory();
      const start = process.hrtime.bigint();
      let tokens = await step(prompts);
      const first = secondsSince(start);
      for (let t = 1; t < newTokens; t++) tokens = await step(tokens.map((id) => [id]));
      const total = secondsSince(start);
      if (run === 0) continue;
      prefill.push(first);
      decode.push(total - first);
    }
  } finally {
    for (const s of sequences) await s.dispose();
  }
  return figures(prompts, newTokens, prefill, decode);
}

interface Options {
  threads: number;
  prompt: number;
  newTokens: number;
  batch: number[];
  runs: number;
  f32?: boolean;
  json?: boolean;
}

async function main({ threads, prompt: promptLength, newTokens, batch: batches, runs, f32: withF32, json }: Options): Promise<void> {
  const log = (line: string): void => {
    if (!json) console.log(line);
  };

  const gguf = await ensureSmolLM2();
  const tokenizer = await loadModelTokenizer(gguf);
  const textIds = tokenizer.encode(TEXT);
  if (textIds.length < promptLength + Math.max(...batches)) throw new UsageError(`--prompt must be at most ${textIds.length - Math.max(...batches)} (the benchmark text has ${textIds.length} tokens)`);
  const promptsFor = (batch: number): number[][] => Array.from({ length: batch }, (_, b) => textIds.slice(b, b + promptLength));

  const idle = await reportIdle('before measuring');
  const { config, params } = await loadModel(gguf);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: threads });
  const engines: { name: string; path: string; kvCache: 'F16' | 'F32' }[] = [{ name: 'llama.cpp Q4_1', path: gguf, kvCache: 'F16' }];
  const scratch = withF32 ? await mkdtemp(join(tmpdir(), 'bench-versus-')) : undefined;
  if (scratch) {
    const f32 = join(scratch, 'smollm2-f32.gguf');
    await writeF32Copy(gguf, f32);
    engines.push({ name: 'llama.cpp F32', path: f32, kvCache: 'F32' });
  }
  const rows: { engine: string; batch: number; figures: Figures; ratioDecode?: number; ratioPrefill?: number }[] = [];
  try {
    for (const batch of batches) {
      const prompts = promptsFor(batch);
      const mine = await ours(engine, prompts, newTokens, runs);
      rows.push({ engine: 'dro engine (float32)', batch, figures: mine });
      for (const e of engines) {
        const llama = await openLlamaCpp(e.path, { threads, kvCache: e.kvCache });
        try {
          const other = await theirs(llama, prompts, newTokens, runs);
          rows.push({ engine: e.name, batch, figures: other, ratioDecode: mine.decodeTokensPerSecond / other.decodeTokensPerSecond, ratioPrefill: mine.prefillTokensPerSecond / other.prefillTokensPerSecond });
        } finally {
          await llama.dispose();
        }
      }
    }
  } finally {
    await engine.release();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
  const after = await reportIdle('at the end of the run', 500);
  if (json) {
    console.log(JSON.stringify({ model: 'SmolLM2-135M-Instruct', gguf, threads, promptTokens: promptLength, newTokens, idle: idle.idle && after.idle, rows }));
    return;
  }
  log(`SmolLM2-135M-Instruct, ${threads} threads, prompts of ${promptLength} tokens, ${newTokens} new tokens each, greedy; medians of ${runs} runs`);
  log('engine                  batch   prefill tok/s   decode tok/s   ours ÷ theirs (prefill, decode)');
  for (const r of rows) {
    const ratio = r.ratioDecode === undefined ? '' : `${r.ratioPrefill!.toFixed(2)}×, ${r.ratioDecode.toFixed(2)}×`;
    log(`${r.engine.padEnd(22)} ${String(r.batch).padStart(6)} ${r.figures.prefillTokensPerSecond.toFixed(1).padStart(15)} ${r.figures.decodeTokensPerSecond.toFixed(1).padStart(14)}   ${ratio}`);
  }
}

const program = scriptProgram('bench:versus')
  .description('This engine and llama.cpp (node-llama-cpp, its prebuilt CPU binary) on the same GGUF (SmolLM2-135M-Instruct Q4_1) in one process: prefill and decode tokens/s, greedy, the same prompts and number of new tokens, and the ratio.')
  .addOption(integerOption('--threads <n>', 'threads for both engines', 1).default(2))
  .addOption(integerOption('--prompt <n>', 'prompt tokens per sequence', 1).default(64))
  .addOption(integerOption('--new-tokens <n>', 'new tokens per sequence, at least 2 (decode speed is measured after the first new token)', 2).default(32))
  .addOption(listOption('--batch <sizes>', 'batch sizes, comma-separated', (v, f) => parseInteger(v, f, 1)).default([1, 16], '1,16'))
  .addOption(integerOption('--runs <n>', 'timed runs per figure, after one warm-up', 1).default(3))
  .option('--f32', 'add llama.cpp on an F32 copy of the GGUF')
  .option('--json', 'print one JSON object instead of lines')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:versus', program);
