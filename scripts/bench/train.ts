// `npm run bench:train`: training throughput of the ONNX Runtime engine. Checks that the machine is
// idle, measures its float32 MatMul peak on training-step shapes, then runs full GRPO training steps
// (forward, backward, AdamW) on a small and a reference config, each in a process of its own (so its
// peak memory is its own), and prints tokens/s of the median step after warm-up, achieved GFLOP/s and
// the share of the peak. `--json` prints one JSON object instead.
import { spawnSync } from 'node:child_process';
import { parseRunConfig } from '../../dro/config.js';
import { uniform } from '../../dro/random.js';
import { parameterCount, parseModelConfig, PolicyEngine, trainStepOptionsOf, type ModelConfig, type TrainSequence } from '../../engine/index.js';
import { matmulPeak, median, reportIdle, secondsSince } from './machine.js';
import { integerOption, numberOption } from '../../cli/options.js';
import { choiceOption, runScript, scriptProgram } from '../lib/command-line.js';

const DETAILS = `
Each config runs --warmup steps (graph build, first allocations; not counted), then --steps timed
steps; tokens/s is batch × length / the median step time. FLOPs per step are counted as 6 × parameters
× tokens (forward and backward of every weight) plus attention: 12 × layers × hidden × T per token
for QKᵀ and AV, forward and backward (no causal discount). The MatMul peak is the median rate of eight
chained GEMMs of the reference config's linear-layer shapes, with the weights as inputs as in training.
--json prints { "peakGflops", "idle", "configs": [{ "name", "tokensPerSecond", "gflops",
"shareOfPeak", "peakRssBytes", ... }] }; warnings go to stderr.`;

// A default run: the bench's GRPO update is the one runs make.
const RUN = parseRunConfig({});

const CONFIGS: Record<string, { config: ModelConfig; batch: number; length: number }> = {
  small: {
    config: parseModelConfig({ vocab_size: 260, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512 }, 'small'),
    batch: 8,
    length: 128,
  },
  reference: {
    config: parseModelConfig({ vocab_size: 260, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 512 }, 'reference'),
    batch: 8,
    length: 256,
  },
};

interface ConfigResult {
  name: string;
  parameters: number;
  batch: number;
  length: number;
  tokensPerSecond: number;
  gflops: number;
  shareOfPeak: number;
  peakRssBytes: number;
  medianStepSeconds: number;
  stepSeconds: number[];
  warmupSeconds: number[];
}

function batch(config: ModelConfig, size: number, length: number, step: number): TrainSequence[] {
  const prompt = Math.floor(length / 4);
  return Array.from({ length: size }, (_, b) => {
    const ids = Array.from({ length }, (_, t) => Math.floor(uniform(['bench', step, b, t]) * config.vocab_size));
    const n = length - prompt;
    return {
      ids,
      completionStart: prompt,
      advantage: b % 2 === 0 ? 1 : -1,
      oldLogprobs: new Array<number>(n).fill(-5),
      referencePolicyLogprobs: new Array<number>(n).fill(-5),
    };
  });
}

/** Runs in the child process: one config, its timings and this process's peak RSS. */
async function measure(name: string, threads: number, warmup: number, steps: number, peakFlops: number): Promise<ConfigResult> {
  const { config, batch: batchSize, length } = CONFIGS[name]!;
  const engine = PolicyEngine.initialise(config, 1, { intraOpThreads: threads });
  const parameters = parameterCount(config);
  const tokens = batchSize * length;
  const flopsPerStep = 6 * parameters * tokens + 12 * config.num_hidden_layers * config.hidden_size * length * tokens;
  const options = { loss: 'grpo' as const, learningRate: RUN.optimizer.learningRate, ...trainStepOptionsOf(RUN) };
  const warmupSeconds: number[] = [];
  const stepSeconds: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    const sequences = batch(config, batchSize, length, s);
    const start = process.hrtime.bigint();
    await engine.train([{ sequences, options }]);
    (s < warmup ? warmupSeconds : stepSeconds).push(secondsSince(start));
  }
  await engine.release();
  const medianStepSeconds = median(stepSeconds);
  const gflops = flopsPerStep / medianStepSeconds / 1e9;
  return {
    name,
    parameters,
    batch: batchSize,
    length,
    tokensPerSecond: tokens / medianStepSeconds,
    gflops,
    shareOfPeak: gflops / (peakFlops / 1e9),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    medianStepSeconds,
    stepSeconds,
    warmupSeconds,
  };
}

function runChild(name: string, threads: number, warmup: number, steps: number, peakFlops: number): ConfigResult {
  const child = spawnSync(process.execPath, [...process.execArgv, import.meta.filename, '--child', name, '--threads', String(threads), '--warmup', String(warmup), '--steps', String(steps), '--peak', String(peakFlops)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 24,
  });
  if (child.status !== 0) throw new Error(`the ${name} config failed (exit ${child.status ?? child.signal})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as ConfigResult;
}

interface Options {
  threads: number;
  steps: number;
  warmup: number;
  only?: string;
  json?: boolean;
  child?: string;
  peak?: number;
}

async function main({ threads, steps, warmup, only, json, child, peak: childPeak }: Options): Promise<void> {
  if (child !== undefined) {
    console.log(JSON.stringify(await measure(child, threads, warmup, steps, childPeak ?? NaN)));
    return;
  }

  const idle = await reportIdle('before measuring');
  const peak = await matmulPeak(threads);
  if (!json) console.log(`float32 MatMul peak (${peak.shape}, ${threads} threads): ${(peak.flops / 1e9).toFixed(1)} GFLOP/s`);
  const configs: ConfigResult[] = [];
  for (const name of Object.keys(CONFIGS)) {
    if (only && only !== name) continue;
    const r = runChild(name, threads, warmup, steps, peak.flops);
    configs.push(r);
    if (!json) {
      console.log(
        `${name.padEnd(10)} ${(r.parameters / 1e6).toFixed(1).padStart(6)}M params, batch ${r.batch} × ${r.length}: ` +
          `${r.tokensPerSecond.toFixed(0).padStart(6)} tokens/s (median of ${steps} steps: ${r.medianStepSeconds.toFixed(2)} s; warm-up ${r.warmupSeconds.map((s) => s.toFixed(1)).join(', ')} s), ` +
          `${r.gflops.toFixed(1)} GFLOP/s = ${(100 * r.shareOfPeak).toFixed(0)}% of the MatMul peak, peak RSS ${(r.peakRssBytes / 2 ** 30).toFixed(2)} GiB`,
      );
    }
  }
  const after = await reportIdle('at the end of the run', 500);
  if (json) console.log(JSON.stringify({ peakGflops: peak.flops / 1e9, idle: idle.idle && after.idle, busyShare: idle.busyShare, threads, configs }));
}

const program = scriptProgram('bench:train')
  .description('Training throughput of the ONNX Runtime engine: full GRPO steps (forward, backward, AdamW) on a small and a reference config, each in a process of its own, against the machine\'s float32 MatMul peak.')
  .addOption(integerOption('--threads <n>', 'intra-op threads', 1).default(2))
  .addOption(integerOption('--steps <n>', 'timed steps per config', 1).default(5))
  .addOption(integerOption('--warmup <n>', 'untimed steps before them', 0).default(2))
  .addOption(choiceOption('--only <config>', 'run this config only', Object.keys(CONFIGS)))
  .option('--json', 'print one JSON object instead of lines')
  // The parent runs each config as `--child <config> ... --peak <flops>` in a process of its own.
  .addOption(choiceOption('--child <config>', 'measure this config and print its result as JSON', Object.keys(CONFIGS)).hideHelp())
  .addOption(numberOption('--peak <flops>', "the parent's MatMul peak, FLOP/s").hideHelp())
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:train', program);
