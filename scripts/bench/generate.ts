// `npm run bench:generate`: decode speed with the KV cache for the reference config and a 135M-parameter
// SmolLM2-shaped config, at batch 1 and 16, greedy and sampled (temperature 1, top-p 0.95), next to the
// tighter of two bounds measured on this machine: read bandwidth (every weight read once per decode
// step) and compute (the float32 MatMul peak). Checks that the machine is idle first; figures are
// medians of several generations. `--json` prints one JSON object instead.
import { parameterCount, parseModelConfig, PolicyEngine, type GenerateRequest, type ModelConfig, type SamplingOptions } from '../../engine/index.js';
import { matmulPeak, median, reportIdle, readBandwidth } from './machine.js';
import { integerOption, parseInteger, UsageError } from '../../cli/options.js';
import { listOption, parseChoice, runScript, scriptProgram } from '../lib/command-line.js';

const MAX_PROMPT = 1024;
const DETAILS = `
--prompt is the prompt length (1 to ${MAX_PROMPT}); decode then runs at --prompt to --prompt + --new-tokens
cached positions. Decode tokens/s = batch × (new tokens − 1) / the time from the first to the last
new token (prefill excluded), median of --runs generations after one warm-up. Sampling "greedy" is
temperature 0; "top-p" is temperature 1 with top-p 0.95. Bounds per configuration and batch B:
  memory bound  = B × read bandwidth / bytes of weights (float32: 4 × parameters); the read
                  bandwidth is ONNX Runtime's ReduceSum over 512 MiB
  compute bound = MatMul peak / (2 × parameters) FLOP per token
The sampling share is the part of the decode time spent choosing tokens in JavaScript.
--json prints { "configs": [{ "name", "batch", "promptTokens", "sampling", "decodeTokensPerSecond",
"prefillSeconds", "boundTokensPerSecond", "samplingShareOfDecode", ... }], ... }; warnings go to stderr.`;

const CONFIGS: Record<string, ModelConfig> = {
  reference: parseModelConfig({ vocab_size: 260, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 2048 }, 'reference'),
  'smollm2-135m': parseModelConfig(
    { vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true, max_position_embeddings: 8192 },
    'smollm2-135m',
  ),
};

// No stop tokens or sequences, so every run generates --new-tokens tokens.
const SAMPLING: Record<string, Omit<SamplingOptions, 'maxNewTokens'>> = {
  greedy: { temperature: 0, topP: 1, topK: 0, stopTokenIds: [], stopSequences: [] },
  'top-p': { temperature: 1, topP: 0.95, topK: 0, stopTokenIds: [], stopSequences: [] },
};

interface Measurement {
  name: string;
  batch: number;
  promptTokens: number;
  sampling: string;
  decodeTokensPerSecond: number;
  prefillSeconds: number;
  boundTokensPerSecond: number;
  shareOfBound: number;
  /** Share of the decode time spent choosing tokens in JavaScript (the rest is ONNX Runtime and feeds). */
  samplingShareOfDecode: number;
  decodeTokensPerSecondRuns: number[];
}

async function measure(engine: PolicyEngine, config: ModelConfig, batch: number, promptLength: number, newTokens: number, sampling: Omit<SamplingOptions, 'maxNewTokens'>, runs: number): Promise<{ decode: number[]; prefill: number[]; samplingShare: number[] }> {
  const requests: GenerateRequest[] = Array.from({ length: batch }, (_, b) => ({
    promptIds: Array.from({ length: promptLength }, (_, t) => (b * 131 + t * 17) % config.vocab_size),
    key: { seed: 1, step: 0, exampleId: `bench-${b}`, sampleIndex: 0 },
  }));
  const decode: number[] = [];
  const prefill: number[] = [];
  const samplingShare: number[] = [];
  for (let run = 0; run <= runs; run++) {
    let firstTokenAt: bigint | undefined;
    let samplingBeforeDecode = 0;
    const timings = { samplingSeconds: 0 };
    const start = process.hrtime.bigint();
    await engine.generate(requests, { ...sampling, maxNewTokens: newTokens }, {
      timings,
      onProgress: () => {
        if (firstTokenAt === undefined) {
          firstTokenAt = process.hrtime.bigint();
          samplingBeforeDecode = timings.samplingSeconds;
        }
      },
    });
    const end = process.hrtime.bigint();
    // Run 0 builds the sessions and grows the memory arena to this length: a warm-up, not counted.
    if (run === 0) continue;
    const first = firstTokenAt ?? start;
    const decodeSeconds = Number(end - first) / 1e9;
    decode.push((batch * (newTokens - 1)) / decodeSeconds);
    prefill.push(Number(first - start) / 1e9);
    samplingShare.push((timings.samplingSeconds - samplingBeforeDecode) / decodeSeconds);
  }
  return { decode, prefill, samplingShare };
}

interface Options {
  threads: number;
  prompt: number;
  newTokens: number;
  batch: number[];
  sampling: string[];
  runs: number;
  only?: string[];
  json?: boolean;
}

async function main({ threads, prompt: promptLength, newTokens, batch: batches, sampling: samplings, runs, only, json }: Options): Promise<void> {
  if (promptLength > MAX_PROMPT) throw new UsageError(`--prompt must be at most ${MAX_PROMPT}, got ${promptLength}`);
  const names = only ?? Object.keys(CONFIGS);

  const idle = await reportIdle('before measuring');
  const bandwidth = await readBandwidth(threads);
  const peak = (await matmulPeak(threads)).flops;
  if (!json) console.log(`read bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s; float32 MatMul peak ${(peak / 1e9).toFixed(1)} GFLOP/s (${threads} threads)`);
  const configs: Measurement[] = [];
  for (const name of names) {
    const config = CONFIGS[name]!;
    const params = parameterCount(config);
    const engine = PolicyEngine.initialise(config, 1, { intraOpThreads: threads });
    try {
      for (const sampling of samplings) {
        for (const batch of batches) {
          const { decode, prefill, samplingShare } = await measure(engine, config, batch, promptLength, newTokens, SAMPLING[sampling]!, runs);
          const bound = Math.min((batch * bandwidth) / (4 * params), peak / (2 * params));
          const m: Measurement = {
            name,
            batch,
            promptTokens: promptLength,
            sampling,
            decodeTokensPerSecond: median(decode),
            prefillSeconds: median(prefill),
            boundTokensPerSecond: bound,
            shareOfBound: median(decode) / bound,
            samplingShareOfDecode: median(samplingShare),
            decodeTokensPerSecondRuns: decode,
          };
          configs.push(m);
          if (!json) {
            console.log(
              `${name.padEnd(13)} ${sampling.padEnd(6)} batch ${String(batch).padStart(2)}, prompt ${promptLength}: ${m.decodeTokensPerSecond.toFixed(1).padStart(7)} tokens/s decode ` +
                `(prefill ${m.prefillSeconds.toFixed(2)} s, sampling ${(100 * m.samplingShareOfDecode).toFixed(1)}% of decode) | bound ${bound.toFixed(1)} tokens/s | ${(100 * m.shareOfBound).toFixed(0)}% of it`,
            );
          }
        }
      }
    } finally {
      await engine.release();
    }
  }
  const after = await reportIdle('at the end of the run', 500);
  if (json) console.log(JSON.stringify({ readBandwidthBytesPerSecond: bandwidth, peakGflops: peak / 1e9, idle: idle.idle && after.idle, busyShare: idle.busyShare, threads, newTokens, configs }));
}

const program = scriptProgram('bench:generate')
  .description('Decode speed with the KV cache for the reference config and a 135M-parameter SmolLM2-shaped config, greedy and sampled, next to the tighter of two bounds measured on this machine (read bandwidth and the float32 MatMul peak).')
  .addOption(integerOption('--threads <n>', 'intra-op threads', 1).default(2))
  .addOption(integerOption('--prompt <n>', `prompt length, 1 to ${MAX_PROMPT}`, 1).default(32))
  .addOption(integerOption('--new-tokens <n>', 'new tokens per generation, at least 2 (decode speed is measured after the first new token)', 2).default(32))
  .addOption(listOption('--batch <sizes>', 'batch sizes, comma-separated', (v, f) => parseInteger(v, f, 1)).default([1, 16], '1,16'))
  .addOption(listOption('--sampling <names>', `samplings, comma-separated: ${Object.keys(SAMPLING).join(', ')}`, (v, f) => parseChoice(v, f, Object.keys(SAMPLING))).default(Object.keys(SAMPLING), Object.keys(SAMPLING).join(',')))
  .addOption(integerOption('--runs <n>', 'timed generations per figure, after one warm-up', 1).default(3))
  .addOption(listOption('--only <configs>', `configs to run, comma-separated: ${Object.keys(CONFIGS).join(', ')} (default: all)`, (v, f) => parseChoice(v, f, Object.keys(CONFIGS))))
  .option('--json', 'print one JSON object instead of lines')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:generate', program);
