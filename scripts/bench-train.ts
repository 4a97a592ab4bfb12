// `npm run bench:train`: training throughput of the ONNX Runtime engine. Measures this machine's float32
// MatMul peak first, then tokens/s and achieved GFLOP/s of full GRPO training steps (forward, backward,
// AdamW) on a reference config and a smaller one, and prints the share of the MatMul peak.
import { parseArgs } from 'node:util';
import { uniform } from '../dro/random.js';
import { parseModelConfig, type ModelConfig } from '../engine/model/config.js';
import { parameterCount } from '../engine/model/params.js';
import { PolicyEngine, type TrainSequence } from '../engine/policy.js';
import { matmulPeak, secondsSince } from './bench/machine.js';
import { positiveIntegerFlag } from './bench/flags.js';

const HELP = `usage: npm run bench:train -- [--threads 2] [--steps 3] [--only small|reference]

FLOPs per step are counted as 6 × parameters × tokens (forward and backward of every weight) plus
attention: 12 × layers × hidden × T per token for QKᵀ and AV, forward and backward (no causal discount).`;

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

async function benchConfig(name: string, config: ModelConfig, batchSize: number, length: number, threads: number, steps: number, peak: number): Promise<void> {
  const engine = PolicyEngine.initialise(config, 1, { intraOpThreads: threads });
  const params = parameterCount(config);
  const tokens = batchSize * length;
  const flopsPerStep = 6 * params * tokens + 12 * config.num_hidden_layers * config.hidden_size * length * tokens;
  const options = { loss: 'grpo' as const, learningRate: 1e-5 };
  const warm = process.hrtime.bigint();
  await engine.trainStep(batch(config, batchSize, length, 0), options);
  const firstStep = secondsSince(warm);
  const start = process.hrtime.bigint();
  for (let s = 1; s <= steps; s++) await engine.trainStep(batch(config, batchSize, length, s), options);
  const perStep = secondsSince(start) / steps;
  await engine.release();
  const gflops = flopsPerStep / perStep / 1e9;
  console.log(
    `${name.padEnd(10)} ${(params / 1e6).toFixed(1).padStart(6)}M params, batch ${batchSize} × ${length}: ` +
      `${(tokens / perStep).toFixed(0).padStart(6)} tokens/s, ${perStep.toFixed(2)} s/step (first step incl. graph build ${firstStep.toFixed(1)} s), ` +
      `${gflops.toFixed(1)} GFLOP/s = ${((100 * gflops) / peak).toFixed(0)}% of the MatMul peak`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, steps: { type: 'string', default: '3' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const threads = positiveIntegerFlag(values.threads, '--threads');
  const steps = positiveIntegerFlag(values.steps, '--steps');
  const best = await matmulPeak(threads);
  const peak = best.flops / 1e9;
  console.log(`float32 MatMul peak (best of four shapes: ${best.shape}, ${threads} threads): ${peak.toFixed(1)} GFLOP/s`);
  const configs: [string, ModelConfig, number, number][] = [
    ['small', parseModelConfig({ vocab_size: 260, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512 }, 'small'), 8, 128],
    ['reference', parseModelConfig({ vocab_size: 260, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 512 }, 'reference'), 8, 256],
  ];
  for (const [name, config, b, t] of configs) {
    if (values.only && values.only !== name) continue;
    await benchConfig(name, config, b, t, threads, steps, peak);
  }
}

main().catch((err: unknown) => {
  console.error(`bench:train: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
