// `npm run bench:train`: training throughput of the ONNX Runtime engine. Measures this machine's float32
// MatMul peak first, then tokens/s and achieved GFLOP/s of full GRPO training steps (forward, backward,
// AdamW) on a reference config and a smaller one, and prints the share of the MatMul peak.
import { parseArgs } from 'node:util';
import { uniform } from '../dro/random.js';
import { parseModelConfig, type ModelConfig } from '../engine/model/config.js';
import { parameterCount } from '../engine/model/params.js';
import { Graph } from '../engine/onnx/graph.js';
import { OrtSession } from '../engine/ort.js';
import { PolicyEngine, type TrainSequence } from '../engine/policy.js';

const HELP = `usage: npm run bench:train -- [--threads 2] [--steps 3] [--only small|reference]

FLOPs per step are counted as 6 × parameters × tokens (forward and backward of every weight) plus
attention: 12 × layers × hidden × T per token for QKᵀ and AV, forward and backward (no causal discount).`;

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/** The best float32 MatMul rate over a few large shapes: the ceiling the training graph is measured against. */
async function matmulPeak(threads: number): Promise<{ gflops: number; shape: string }> {
  let best = { gflops: 0, shape: '' };
  for (const [m, k, n] of [[1024, 1024, 1024], [2048, 1024, 2048], [4096, 512, 512], [2048, 512, 1376]] as const) {
    const g = new Graph('peak');
    g.output(g.matmul(g.input('a', 'float32', [m, k]), g.input('b', 'float32', [k, n])), 'c');
    const session = await OrtSession.create(g.toModelBytes(), { intraOpThreads: threads });
    const feeds = {
      a: { dtype: 'float32' as const, dims: [m, k], data: Float32Array.from({ length: m * k }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) },
      b: { dtype: 'float32' as const, dims: [k, n], data: Float32Array.from({ length: k * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5) },
    };
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const runs = 6;
    const start = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await session.run(feeds);
    await session.release();
    const gflops = (2 * m * k * n * runs) / seconds(start) / 1e9;
    if (gflops > best.gflops) best = { gflops, shape: `${m}×${k} · ${k}×${n}` };
  }
  return best;
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
      refLogprobs: new Array<number>(n).fill(-5),
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
  const firstStep = seconds(warm);
  const start = process.hrtime.bigint();
  for (let s = 1; s <= steps; s++) await engine.trainStep(batch(config, batchSize, length, s), options);
  const perStep = seconds(start) / steps;
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
  const threads = Number(values.threads);
  const steps = Number(values.steps);
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a positive integer, got ${values.threads}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a positive integer, got ${values.steps}`);
  const best = await matmulPeak(threads);
  const peak = best.gflops;
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
