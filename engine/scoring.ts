// Scoring: per-token log-probs and ranks of given targets for a right-padded batch, in one run of a
// session that takes the parameters as inputs, so the current and the reference policy share it.
import { paddedFeeds, weightFeeds, type Weights } from './batching.js';
import type { FloatArray, FloatDType } from './float-arrays.js';
import { EngineInputError, overflowError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import type { LoraConfig } from './model/lora.js';
import { buildScoreGraph } from './model/train-graph.js';
import { OrtSession, type SessionOptions } from './ort.js';

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
  signal?: AbortSignal;
}

export function createScoreSession(config: ModelConfig, dtype: FloatDType, options: SessionOptions, lora?: LoraConfig): Promise<OrtSession> {
  return OrtSession.create(buildScoreGraph(config, dtype, lora).toModelBytes(), options);
}

/** Checks the requests before `session` is asked for, so a bad request never pays for building one. */
export async function scoreBatch(
  session: () => Promise<OrtSession>,
  config: ModelConfig,
  dtype: FloatDType,
  weights: Weights,
  requests: readonly ScoreRequest[],
  signal?: AbortSignal,
): Promise<ScoreResult[]> {
  for (const [i, r] of requests.entries()) {
    if (!Number.isInteger(r.targetStart) || r.targetStart < 1 || r.targetStart > r.ids.length) {
      throw new EngineInputError(`score request ${i}: targetStart ${r.targetStart} must be in 1..${r.ids.length}`);
    }
  }
  const { feeds, length } = paddedFeeds(config, dtype, requests.map((r) => r.ids), 'right');
  const ready = await session();
  throwIfAborted(signal);
  const out = await ready.run({ ...weightFeeds(dtype, weights), ...feeds });
  const logprobs = out.logprobs!.data as FloatArray;
  const ranks = out.ranks!.data as BigInt64Array;
  const width = length - 1;
  return requests.map((r, b) => {
    const from = b * width + r.targetStart - 1;
    const to = b * width + r.ids.length - 1;
    const scored = Array.from(logprobs.subarray(from, to));
    const bad = scored.findIndex(Number.isNaN);
    if (bad >= 0) throw overflowError(`score request ${b}: the log-prob at position ${r.targetStart + bad} is NaN`, weights.values);
    return { logprobs: scored, ranks: Array.from(ranks.subarray(from, to), Number) };
  });
}
