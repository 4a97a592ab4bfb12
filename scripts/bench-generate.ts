// `npm run bench:generate`: decode speed with the KV cache at batch 1 and 16, for the engine-I reference
// config and a 135M-parameter SmolLM2-shaped config, next to two bounds measured on this machine: memory
// bandwidth (every weight is read once per decode step) and compute (the float32 MatMul peak).
import { parseArgs } from 'node:util';
import { parseModelConfig, type ModelConfig } from '../engine/model/config.js';
import { parameterCount } from '../engine/model/params.js';
import { PolicyEngine, type GenerateRequest } from '../engine/policy.js';
import { copyBandwidth, matmulPeak, secondsSince } from './bench/machine.js';
import { positiveIntegerFlag } from './bench/flags.js';

const HELP = `usage: npm run bench:generate -- [--threads 2] [--prompt 32] [--new-tokens 32] [--only reference|smollm2-135m]

Decode tokens/s = tokens generated after the prompt / time of the decode steps (prefill excluded), with
greedy sampling. Bounds per configuration and batch B:
  memory bound  = B × copy bandwidth / bytes of weights (float32: 4 × parameters)
  compute bound = MatMul peak / (2 × parameters) FLOP per token
Both bounds are measured first on this machine.`;

async function bench(name: string, config: ModelConfig, threads: number, promptLength: number, newTokens: number, bandwidth: number, peak: number): Promise<void> {
  const params = parameterCount(config);
  const init = process.hrtime.bigint();
  const engine = PolicyEngine.initialise(config, 1, { intraOpThreads: threads });
  const initSeconds = secondsSince(init);
  for (const batch of [1, 16]) {
    const requests: GenerateRequest[] = Array.from({ length: batch }, (_, b) => ({
      promptIds: Array.from({ length: promptLength }, (_, t) => (b * 131 + t * 17) % config.vocab_size),
      key: { seed: 1, step: 0, exampleId: `bench-${b}`, sampleIndex: 0 },
    }));
    const sampling = { temperature: 0, maxNewTokens: newTokens };
    await engine.generate(requests, { ...sampling, maxNewTokens: 2 }); // builds the sessions
    let firstTokenAt: bigint | undefined;
    const start = process.hrtime.bigint();
    await engine.generate(requests, sampling, {
      onProgress: () => {
        firstTokenAt ??= process.hrtime.bigint();
      },
    });
    const decodeSeconds = Number(process.hrtime.bigint() - (firstTokenAt ?? start)) / 1e9;
    const tokensPerSecond = (batch * (newTokens - 1)) / decodeSeconds;
    const memoryBound = (batch * bandwidth) / (4 * params);
    const computeBound = peak / (2 * params);
    const tighter = Math.min(memoryBound, computeBound);
    console.log(
      `${name.padEnd(13)} batch ${String(batch).padStart(2)}: ${tokensPerSecond.toFixed(1).padStart(7)} tokens/s decode ` +
        `(prefill ${(Number((firstTokenAt ?? start) - start) / 1e9).toFixed(2)} s) | memory bound ${memoryBound.toFixed(1)}, compute bound ${computeBound.toFixed(1)} tokens/s | ` +
        `${((100 * tokensPerSecond) / tighter).toFixed(0)}% of the tighter bound`,
    );
  }
  console.log(`${''.padEnd(13)} (${(params / 1e6).toFixed(1)}M parameters, initialised in ${initSeconds.toFixed(1)} s)`);
  await engine.release();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      threads: { type: 'string', default: '2' },
      prompt: { type: 'string', default: '32' },
      'new-tokens': { type: 'string', default: '32' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const threads = positiveIntegerFlag(values.threads, '--threads');
  const promptLength = positiveIntegerFlag(values.prompt, '--prompt');
  const newTokens = positiveIntegerFlag(values['new-tokens'], '--new-tokens');
  const bandwidth = copyBandwidth();
  const peak = (await matmulPeak(threads)).flops;
  console.log(`copy bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s; float32 MatMul peak ${(peak / 1e9).toFixed(1)} GFLOP/s (${threads} threads)`);
  const configs: [string, ModelConfig][] = [
    ['reference', parseModelConfig({ vocab_size: 260, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 1024 }, 'reference')],
    [
      'smollm2-135m',
      parseModelConfig(
        { vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true, max_position_embeddings: 8192 },
        'smollm2-135m',
      ),
    ],
  ];
  for (const [name, config] of configs) {
    if (values.only && values.only !== name) continue;
    await bench(name, config, threads, promptLength, newTokens, bandwidth, peak);
  }
}

main().catch((err: unknown) => {
  console.error(`bench:generate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
