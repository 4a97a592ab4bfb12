// `npm run bench:update`: an update's throughput and peak memory on SmolLM2-135M-Instruct (the GGUF the
// tests fetch) for batches of 16, 32 and 64 sequences of 512 tokens in micro-batches of 2,048 tokens, each
// batch size in a process of its own (so its peak RSS is its own), beside the engine's own estimate of that
// peak; with --torch, the PyTorch anchor (scripts/bench/torch_update.py) on the same shapes in the same sitting.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseRunConfig } from '../../dro/config.js';
import { uniform } from '../../dro/random.js';
import { estimateUpdateBytes, loadModel, parameterCount, PolicyEngine, trainStepOptionsOf, type TrainSequence } from '../../engine/index.js';
import { integerOption, parseInteger } from '../../cli/options.js';
import { ensureSmolLM2 } from '../models/smollm2.js';
import { REPO_ROOT } from '../services/dev-services.js';
import { median, reportIdle, secondsSince } from './machine.js';
import { listOption, runScript, scriptProgram } from '../lib/command-line.js';
import { withImportedHfDir } from '../lib/hf-dir.js';

const DETAILS = `
Each batch runs --warmup updates (session builds, first allocations; not counted; the PyTorch anchor
runs as many), then --steps timed ones, in a fresh process. An update is a full fine-tune step: the
token-mean next-token loss over all 511 predicted tokens of every sequence (the SFT loss, which is what
the PyTorch anchor computes), gradients
accumulated over the micro-batches, one clipped AdamW step. tokens/s = batch × 511 / the median update.
Peak RSS is the process's (getrusage), model loading included, as the anchor reports it. The estimate is
engine/memory.ts's, which a worker checks against its --memory budget before an update.
--torch PYTHON runs scripts/bench/torch_update.py with that Python (its venv needs torch and
transformers) on an HF directory imported from the same GGUF, after each of ours.
--json prints { "idle", "model", "microBatchTokens", "length", "runs": [{ "engine", "batch", "tokensPerSecond",
"peakRssBytes", "estimateBytes", ... }] }; warnings go to stderr.`;

const RUN = parseRunConfig({});

interface UpdateResult {
  engine: 'dro' | 'pytorch';
  batch: number;
  tokensPerSecond: number;
  secondsPerStep: number;
  peakRssBytes: number;
  estimateBytes?: number;
  microBatches?: number;
  stepSeconds?: number[];
  warmupSeconds?: number[];
  /** glibc malloc's settings the process ran with (bin/with-allocator's, unless the environment set others). */
  malloc?: { mmapThreshold?: string; trimThreshold?: string };
}

function batch(vocab: number, size: number, length: number, step: number): TrainSequence[] {
  return Array.from({ length: size }, (_, b) => ({ ids: Array.from({ length }, (_, t) => Math.floor(uniform(['bench-update', step, b, t]) * vocab)), completionStart: 1 }));
}

/** Runs in the child process: updates of one batch size, their timings and this process's peak RSS. */
async function measure(gguf: string, size: number, o: Options): Promise<UpdateResult> {
  const { config, params } = await loadModel(gguf);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: o.threads });
  const options = { loss: 'sft' as const, learningRate: 1e-5, ...trainStepOptionsOf(RUN), microBatchTokens: o.micro };
  const warmupSeconds: number[] = [];
  const stepSeconds: number[] = [];
  let microBatches = 0;
  for (let s = 0; s < o.warmup + o.steps; s++) {
    const sequences = batch(config.vocab_size, size, o.length, s);
    const start = process.hrtime.bigint();
    const [result] = await engine.train([{ sequences, options }]);
    microBatches = result!.microBatches;
    (s < o.warmup ? warmupSeconds : stepSeconds).push(secondsSince(start));
  }
  await engine.release();
  const secondsPerStep = median(stepSeconds);
  return {
    engine: 'dro',
    batch: size,
    tokensPerSecond: (size * (o.length - 1)) / secondsPerStep,
    secondsPerStep,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    estimateBytes: estimateUpdateBytes(config, { trainedParameters: parameterCount(config), microBatchTokens: o.micro, longest: o.length }).bytes,
    microBatches,
    stepSeconds,
    warmupSeconds,
    malloc: { mmapThreshold: process.env.MALLOC_MMAP_THRESHOLD_, trimThreshold: process.env.MALLOC_TRIM_THRESHOLD_ },
  };
}

function runOurs(gguf: string, size: number, o: Options): UpdateResult {
  const args = ['--child', String(size), '--threads', String(o.threads), '--steps', String(o.steps), '--warmup', String(o.warmup), '--micro', String(o.micro), '--length', String(o.length)];
  // Through bin/with-allocator, as every dro worker runs (bin/dro); the PyTorch anchor runs as its users run it.
  const launcher = resolve(REPO_ROOT, 'bin', 'with-allocator');
  const child = spawnSync(launcher, [process.execPath, ...process.execArgv, import.meta.filename, ...args, '--gguf', gguf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (child.status !== 0) throw new Error(`the batch of ${size} failed (exit ${child.status ?? child.signal})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as UpdateResult;
}

function runTorch(python: string, modelDir: string, size: number, o: Options): UpdateResult {
  const script = resolve(REPO_ROOT, 'scripts', 'bench', 'torch_update.py');
  if (!existsSync(script)) throw new Error(`the PyTorch anchor is not at ${script}`);
  // The anchor's warm-up updates are untimed, as ours.
  const child = spawnSync(python, [script, modelDir, String(size), String(o.steps), '--warmup', String(o.warmup), '--micro', String(o.micro), '--length', String(o.length), '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (child.status !== 0) throw new Error(`the PyTorch anchor failed for the batch of ${size} (exit ${child.status ?? child.signal})`);
  const r = JSON.parse(child.stdout.trim().split('\n').pop()!) as { tokensPerSecond: number; secondsPerStep: number; peakRssMiB: number };
  return { engine: 'pytorch', batch: size, tokensPerSecond: r.tokensPerSecond, secondsPerStep: r.secondsPerStep, peakRssBytes: r.peakRssMiB * 2 ** 20 };
}

interface Options {
  batches: number[];
  length: number;
  micro: number;
  threads: number;
  steps: number;
  warmup: number;
  torch?: string;
  json?: boolean;
  child?: number;
  gguf?: string;
}

const GiB = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

async function main(o: Options): Promise<void> {
  if (o.child !== undefined) {
    console.log(JSON.stringify(await measure(o.gguf!, o.child, o)));
    return;
  }
  const gguf = await ensureSmolLM2();
  await withImportedHfDir(gguf, o.torch !== undefined, async (modelDir) => {
    const idle = await reportIdle('before measuring');
    const runs: UpdateResult[] = [];
    for (const size of o.batches) {
      const pair = [runOurs(gguf, size, o), ...(o.torch ? [runTorch(o.torch, modelDir!, size, o)] : [])];
      for (const r of pair) {
        runs.push(r);
        if (!o.json) {
          console.log(
            `${r.engine.padEnd(8)} batch ${String(size).padStart(3)} × ${o.length}: ${r.tokensPerSecond.toFixed(1).padStart(6)} tokens/s (${r.secondsPerStep.toFixed(1)} s per update` +
              `${r.microBatches ? `, ${r.microBatches} micro-batches` : ''}), peak RSS ${GiB(r.peakRssBytes)}${r.estimateBytes ? ` (estimated ${GiB(r.estimateBytes)})` : ''}`,
          );
        }
      }
    }
    const after = await reportIdle('at the end of the run', 500);
    if (o.json) console.log(JSON.stringify({ idle: idle.idle && after.idle, model: 'SmolLM2-135M-Instruct', microBatchTokens: o.micro, length: o.length, threads: o.threads, runs }));
  });
}

const program = scriptProgram('bench:update')
  .description("An update's tokens/s and peak RSS on SmolLM2-135M-Instruct: batches of 16, 32 and 64 sequences of 512 tokens in 2,048-token micro-batches, each in a process of its own, optionally beside PyTorch's.")
  .addOption(listOption('--batches <list>', 'batch sizes, comma-separated', (v, flag) => parseInteger(v, flag, 1)).default([16, 32, 64]))
  .addOption(integerOption('--length <n>', 'tokens per sequence', 2).default(512))
  .addOption(integerOption('--micro <n>', 'update.microBatchTokens', 1).default(2048))
  .addOption(integerOption('--threads <n>', 'intra-op threads', 1).default(2))
  .addOption(integerOption('--steps <n>', 'timed updates per batch', 1).default(2))
  .addOption(integerOption('--warmup <n>', 'untimed updates before them (ours and PyTorch\'s)', 0).default(2))
  .option('--torch <python>', "also run PyTorch's anchor with this Python (e.g. ~/torch-anchor/bin/python)")
  .option('--json', 'print one JSON object instead of lines')
  // The parent runs each batch size as `--child <size> --gguf <path>` in a process of its own.
  .addOption(integerOption('--child <size>', 'measure this batch size and print its result as JSON', 1).hideHelp())
  .option('--gguf <path>', 'the model file (set by the parent)')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:update', program);
