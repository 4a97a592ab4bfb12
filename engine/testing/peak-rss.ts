// Child process for engine/memory.test.ts: runs one engine call of a given shape on a freshly initialised
// model and prints this process's peak RSS as JSON, so the estimate is checked against a whole process
// (Node, ONNX Runtime, weights, sessions), as a policy worker sees it.
import { uniform } from '../../dro/random.js';
import { PolicyEngine } from '../policy.js';
import { parseModelConfig } from '../model/config.js';
import type { EngineLora } from '../policy.js';
import { trainStepOptions, samplingOptions } from './fixtures.js';

export interface PeakRssShape {
  what: 'update' | 'score' | 'generate';
  /** A config.json object. */
  model: Record<string, unknown>;
  rows: number;
  /** Tokens per row (for generate: the prompt). */
  length: number;
  /** update/score: the micro-batch budget; generate: new tokens per row. */
  tokens: number;
  lora?: EngineLora;
}

const shape = JSON.parse(process.argv[2]!) as PeakRssShape;
const config = parseModelConfig(shape.model, 'peak-rss shape');
const engine = PolicyEngine.initialise(config, 1, { intraOpThreads: 2, ...(shape.lora ? { lora: shape.lora } : {}) });
const ids = (row: number): number[] => Array.from({ length: shape.length }, (_, t) => Math.floor(uniform(['peak-rss', row, t]) * config.vocab_size));
const rows = Array.from({ length: shape.rows }, (_, row) => ids(row));
if (shape.what === 'update') {
  await engine.train([{ sequences: rows.map((ids) => ({ ids, completionStart: 1 })), options: trainStepOptions('sft', { learningRate: 1e-5, microBatchTokens: shape.tokens }) }]);
} else if (shape.what === 'score') {
  await engine.score(rows.map((ids) => ({ ids, targetStart: 1 })), { microBatchTokens: shape.tokens });
} else {
  const requests = rows.map((promptIds, row) => ({ promptIds, key: { seed: 1, step: 0, exampleId: 'peak-rss', sampleIndex: row } }));
  await engine.generate(requests, samplingOptions({ temperature: 1, maxNewTokens: shape.tokens, stopTokenIds: [] }));
}
await engine.release();
console.log(JSON.stringify({ peakBytes: process.resourceUsage().maxRSS * 1024 }));
