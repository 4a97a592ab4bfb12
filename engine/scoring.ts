// Scoring: per-token log-probs and ranks of given targets for right-padded batches packed by a token
// budget, in runs of a session that takes the parameters as inputs, so the current and the reference
// policy share it. Only the positions that predict a target reach the output projection.
import { packByTokens } from '../dro/batch-plan.js';
import { checkIds, paddedFeeds, weightFeeds, type Weights } from './batching.js';
import type { FloatArray, FloatDType } from './float-arrays.js';
import { EngineInputError, overflowError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import type { LoraConfig } from './model/lora.js';
import { resolveMicroBatchTokens } from './memory.js';
import { buildScoreGraph, SCORE_IO } from './model/train-graph.js';
import { OrtSession, type SessionOptions, type TensorData } from './ort.js';

export interface ScoreRequest {
  ids: number[];
  /** Index of the first target token: scores are returned for ids[targetStart..]. At least 1. */
  targetStart: number;
}

export interface ScoreResult {
  logprobs: number[];
  ranks: number[];
}

export interface ScoreOptions {
  /** 'reference': the frozen reference policy (the KL anchor); default 'current'. */
  policy?: 'current' | 'reference';
  /**
   * Most tokens (sequences × the longest) per session run: the requests are packed longest first
   * (dro/batch-plan.ts) so memory stays bounded whatever their number; 'auto' by the model. Absent: one run.
   */
  microBatchTokens?: number | 'auto';
  signal?: AbortSignal;
}

export function createScoreSession(config: ModelConfig, dtype: FloatDType, options: SessionOptions, lora?: LoraConfig): Promise<OrtSession> {
  return OrtSession.create(buildScoreGraph(config, dtype, lora).toModelBytes(), options);
}

/**
 * Feeds of the targets of each row: the positions predicting them and their ids. A short row repeats its
 * last target, a row without targets scores position 0 (both read by nobody), so every row has `width`.
 */
function targetFeeds(requests: readonly ScoreRequest[]): { feeds: Record<string, TensorData>; width: number } {
  const width = Math.max(1, ...requests.map((r) => r.ids.length - r.targetStart));
  const positions = new BigInt64Array(requests.length * width);
  const ids = new BigInt64Array(requests.length * width);
  requests.forEach((r, b) => {
    const n = r.ids.length - r.targetStart;
    for (let j = 0; j < width; j++) {
      const target = r.targetStart + Math.min(j, n - 1);
      positions[b * width + j] = BigInt(n === 0 ? 0 : target - 1);
      ids[b * width + j] = BigInt(r.ids[n === 0 ? 0 : target]!);
    }
  });
  const dims = [requests.length, width];
  return { width, feeds: { [SCORE_IO.targetPositions]: { dtype: 'int64', dims, data: positions }, [SCORE_IO.targetIds]: { dtype: 'int64', dims, data: ids } } };
}

/** Checks the requests before `session` is asked for, so a bad request never pays for building one. */
export async function scoreBatch(
  session: () => Promise<OrtSession>,
  config: ModelConfig,
  dtype: FloatDType,
  weights: Weights,
  requests: readonly ScoreRequest[],
  options: Pick<ScoreOptions, 'microBatchTokens' | 'signal'> = {},
): Promise<ScoreResult[]> {
  for (const [i, r] of requests.entries()) {
    if (!Number.isInteger(r.targetStart) || r.targetStart < 1 || r.targetStart > r.ids.length) {
      throw new EngineInputError(`score request ${i}: targetStart ${r.targetStart} must be in 1..${r.ids.length}`);
    }
  }
  if (requests.length === 0) throw new EngineInputError('empty batch');
  checkIds(config, requests.map((r) => r.ids));
  const { microBatchTokens, signal } = options;
  // Scoring is forward-only: a sequence longer than the budget runs alone rather than failing the call.
  const plan = microBatchTokens === undefined ? [requests.map((_, i) => i)] : packByTokens(requests.map((r) => r.ids.length), { maxTokens: resolveMicroBatchTokens(microBatchTokens, config), maxSequences: Infinity, oversize: 'alone' });
  const ready = await session();
  const results: ScoreResult[] = new Array<ScoreResult>(requests.length);
  for (const group of plan) {
    throwIfAborted(signal);
    const rows = group.map((i) => requests[i]!);
    const { feeds } = paddedFeeds(config, dtype, rows.map((r) => r.ids), 'right');
    const targets = targetFeeds(rows);
    const out = await ready.run({ ...weightFeeds(dtype, weights), ...feeds, ...targets.feeds });
    const logprobs = out.logprobs!.data as FloatArray;
    const ranks = out.ranks!.data as BigInt64Array;
    rows.forEach((r, b) => {
      const from = b * targets.width;
      const to = from + r.ids.length - r.targetStart;
      const scored = Array.from(logprobs.subarray(from, to));
      const bad = scored.findIndex(Number.isNaN);
      if (bad >= 0) throw overflowError(`score request ${group[b]}: the log-prob at position ${r.targetStart + bad} is NaN`, weights.values);
      results[group[b]!] = { logprobs: scored, ranks: Array.from(ranks.subarray(from, to), Number) };
    });
  }
  return results;
}
