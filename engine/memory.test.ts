// The memory estimates against the peak RSS of real processes (one per shape, so each peak is its own),
// and the 'auto' micro-batch rule.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autoMicroBatchTokens, estimateGenerateBytes, estimateScoreBytes, estimateUpdateBytes, resolveMicroBatchTokens, trainedParameterCount, type MemoryEstimate } from './memory.js';
import { parseModelConfig } from './model/config.js';
import type { EngineLora } from './policy.js';
import type { PeakRssShape } from './testing/peak-rss.js';

const tsx = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsx');
const child = join(import.meta.dirname, 'testing', 'peak-rss.ts');

/** A 32M-parameter model: large enough that weights and activations dwarf Node's own footprint, small enough to train in seconds. */
const MID = { vocab_size: 16384, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 2048 };
const mid = parseModelConfig(MID, 'mid');
const LORA: EngineLora = { rank: 16, alpha: 32, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 };

function peakRss(shape: PeakRssShape): Promise<number> {
  return new Promise((resolve, reject) => {
    const proc = spawn(tsx, [child, JSON.stringify(shape)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('error', reject);
    proc.on('close', (code) => {
      if (code !== 0) return reject(new Error(`peak-rss child exited ${code}: ${err}`));
      const line = out.trim().split('\n').at(-1)!;
      resolve((JSON.parse(line) as { peakBytes: number }).peakBytes);
    });
  });
}

async function ratio(shape: PeakRssShape, estimate: MemoryEstimate): Promise<number> {
  const measured = await peakRss(shape);
  console.log(`${shape.what} ${shape.rows}×${shape.length} (${shape.tokens})${shape.lora ? ' LoRA' : ''}: estimate ${(estimate.bytes / 2 ** 20).toFixed(0)} MiB, measured ${(measured / 2 ** 20).toFixed(0)} MiB`);
  return estimate.bytes / measured;
}

describe('memory estimates against measured peak RSS', () => {
  const fresh = { trainedParameters: trainedParameterCount(mid), fresh: true, accumulates: false };

  it('an update, within 25%, for micro-batches of long and of many short sequences, and under LoRA', async () => {
    const long = await ratio({ what: 'update', model: MID, rows: 4, length: 512, tokens: 2048 }, estimateUpdateBytes(mid, { ...fresh, microBatchTokens: 2048, longest: 512 }));
    const short = await ratio({ what: 'update', model: MID, rows: 16, length: 128, tokens: 2048 }, estimateUpdateBytes(mid, { ...fresh, microBatchTokens: 2048, longest: 128 }));
    const lora = await ratio(
      { what: 'update', model: MID, rows: 4, length: 512, tokens: 2048, lora: LORA },
      estimateUpdateBytes(mid, { trainedParameters: trainedParameterCount(mid, LORA), lora: true, fresh: true, accumulates: false, microBatchTokens: 2048, longest: 512 }),
    );
    for (const r of [long, short, lora]) expect(r, `estimate / measured: long ${long.toFixed(2)}, short ${short.toFixed(2)}, lora ${lora.toFixed(2)}`).toBeGreaterThan(0.75);
    for (const r of [long, short, lora]) expect(r, `estimate / measured: long ${long.toFixed(2)}, short ${short.toFixed(2)}, lora ${lora.toFixed(2)}`).toBeLessThan(1.25);
  });

  it('scoring and generation, within 25%', async () => {
    const score = await ratio({ what: 'score', model: MID, rows: 8, length: 512, tokens: 4096 }, estimateScoreBytes(mid, { ...fresh, tokens: 4096, longest: 512 }));
    const generate = await ratio({ what: 'generate', model: MID, rows: 32, length: 64, tokens: 192 }, estimateGenerateBytes(mid, { ...fresh, rows: 32, length: 256 }));
    for (const r of [score, generate]) expect(r, `estimate / measured: score ${score.toFixed(2)}, generate ${generate.toFixed(2)}`).toBeGreaterThan(0.75);
    for (const r of [score, generate]) expect(r, `estimate / measured: score ${score.toFixed(2)}, generate ${generate.toFixed(2)}`).toBeLessThan(1.25);
  });
});

describe('the micro-batch budget', () => {
  it("'auto' is a power of two chosen from the model alone: 2,048 for SmolLM2-135M, less for a wider vocabulary and longer context", () => {
    const smollm2 = parseModelConfig({ vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, max_position_embeddings: 8192, tie_word_embeddings: true }, 'smollm2');
    expect(autoMicroBatchTokens(smollm2)).toBe(2048);
    const qwen05 = parseModelConfig({ vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, max_position_embeddings: 32768, tie_word_embeddings: true }, 'qwen');
    expect(autoMicroBatchTokens(qwen05)).toBe(1024);
    expect(autoMicroBatchTokens(mid)).toBeGreaterThan(2048);
    expect(resolveMicroBatchTokens('auto', mid)).toBe(autoMicroBatchTokens(mid));
    expect(resolveMicroBatchTokens(300, mid)).toBe(300);
  });

  it('an update estimate grows with the micro-batch, not with the batch', () => {
    const plan = { trainedParameters: trainedParameterCount(mid), microBatchTokens: 2048, longest: 512 };
    expect(estimateUpdateBytes(mid, plan).bytes).toBeLessThan(estimateUpdateBytes(mid, { ...plan, microBatchTokens: 4096 }).bytes);
    expect(estimateUpdateBytes(mid, plan).bytes).toBeLessThan(estimateUpdateBytes(mid, { ...plan, longest: 2048, microBatchTokens: 2048 }).bytes);
    expect(estimateUpdateBytes(mid, { ...plan, accumulates: false }).bytes).toBeLessThan(estimateUpdateBytes(mid, plan).bytes);
  });
});
