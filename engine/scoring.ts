// Scoring: per-token log-probs and ranks of given targets for right-padded batches packed by a token
// budget, in runs of sessions that take the parameters as inputs, so the current and the reference
// policy share them. Only the positions that predict a target reach the output projection. Consecutive
// requests that share a prefix (a prompt and its chains) run it once: its keys and values are computed
// for one row and attended by every row after it.
import { packByTokens } from '../dro/batch-plan.js';
import { checkIds, paddedFeeds, weightFeeds, type Weights } from './batching.js';
import { zeros, type FloatArray, type FloatDType } from './float-arrays.js';
import { EngineInputError, overflowError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import type { LoraConfig } from './model/lora.js';
import { resolveMicroBatchTokens } from './memory.js';
import { buildPrefixGraph, buildScoreGraph, SCORE_IO } from './model/train-graph.js';
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

/** The scoring graphs: whole rows; a shared prefix's keys and values; rows after such a prefix. */
export type ScoreGraphKind = 'whole' | 'prefix' | 'after-prefix';

export function createScoreSession(config: ModelConfig, dtype: FloatDType, options: SessionOptions, lora: LoraConfig | undefined, kind: ScoreGraphKind): Promise<OrtSession> {
  const graph = kind === 'prefix' ? buildPrefixGraph(config, dtype, lora) : buildScoreGraph(config, dtype, lora, kind === 'after-prefix');
  return OrtSession.create(graph.toModelBytes(), options);
}

/** The shortest prefix run once for the rows that share it; shorter ones are not worth a session run. */
export const MIN_SHARED_PREFIX = 8;

export interface PrefixRun {
  /** Requests start..end − 1. */
  start: number;
  end: number;
  /** Tokens they share and run once; 0: each is scored whole. */
  prefix: number;
}

function commonPrefix(a: readonly number[], b: readonly number[], cap: number): number {
  let n = 0;
  while (n < cap && a[n] === b[n]) n++;
  return n;
}

/**
 * Consecutive requests grouped by the prefix they share (at most each one's targetStart − 1, so every
 * scored position stays in a row's own part). A run grows while the tokens it saves, (rows − 1) ×
 * prefix, do not fall and the prefix stays at least MIN_SHARED_PREFIX: the chains of one prompt join,
 * the next prompt (sharing only a chat template's header) starts a run of its own. A pure function of
 * the requests, so the same requests are always scored the same way.
 */
export function sharedPrefixRuns(requests: readonly ScoreRequest[]): PrefixRun[] {
  const runs: PrefixRun[] = [];
  for (let start = 0; start < requests.length; ) {
    const first = requests[start]!;
    let prefix = first.targetStart - 1;
    let end = start + 1;
    for (; end < requests.length; end++) {
      const next = requests[end]!;
      const shared = Math.min(prefix, commonPrefix(first.ids, next.ids, next.targetStart - 1));
      if (shared < MIN_SHARED_PREFIX || (end - start) * shared < (end - start - 1) * prefix) break;
      prefix = shared;
    }
    runs.push({ start, end, prefix: end - start > 1 ? prefix : 0 });
    start = end;
  }
  return runs;
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

/** Checks the requests before a session is asked for, so a bad request never pays for building one. */
export async function scoreBatch(
  session: (kind: ScoreGraphKind) => Promise<OrtSession>,
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
  const longest = Math.max(...requests.map((r) => r.ids.length));
  if (longest > config.max_position_embeddings) throw new EngineInputError(`sequence of ${longest} tokens exceeds max_position_embeddings ${config.max_position_embeddings}`);
  const { microBatchTokens, signal } = options;
  const budget = microBatchTokens === undefined ? undefined : resolveMicroBatchTokens(microBatchTokens, config);
  // Scoring is forward-only: a sequence longer than the budget runs alone rather than failing the call.
  const pack = (lengths: readonly number[]): number[][] =>
    budget === undefined ? (lengths.length === 0 ? [] : [lengths.map((_, i) => i)]) : packByTokens(lengths, { maxTokens: budget, maxSequences: Infinity, oversize: 'alone' });
  const base = weightFeeds(dtype, weights);
  const results: ScoreResult[] = new Array<ScoreResult>(requests.length);

  /** Runs `rows` (requests `indices`, or their parts after a shared prefix) and files their scores. */
  const run = async (kind: 'whole' | 'after-prefix', indices: readonly number[], rows: readonly ScoreRequest[], extra: Record<string, TensorData>, offsets?: readonly number[]): Promise<void> => {
    throwIfAborted(signal);
    const { feeds, length } = paddedFeeds(config, dtype, rows.map((r) => r.ids), 'right');
    // After a prefix, a row's positions continue from it (its padding slots too: they are masked).
    if (offsets) {
      const positions = feeds.positions!.data as BigInt64Array;
      offsets.forEach((offset, b) => {
        for (let t = b * length; t < (b + 1) * length; t++) positions[t] = positions[t]! + BigInt(offset);
      });
    }
    const targets = targetFeeds(rows);
    const out = await (await session(kind)).run({ ...base, ...extra, ...feeds, ...targets.feeds });
    const logprobs = out.logprobs!.data as FloatArray;
    const ranks = out.ranks!.data as BigInt64Array;
    rows.forEach((r, b) => {
      const from = b * targets.width;
      const to = from + r.ids.length - r.targetStart;
      const scored = Array.from(logprobs.subarray(from, to));
      const bad = scored.findIndex(Number.isNaN);
      if (bad >= 0) throw overflowError(`score request ${indices[b]}: the log-prob at position ${(offsets?.[b] ?? 0) + r.targetStart + bad} is NaN`, weights.values);
      results[indices[b]!] = { logprobs: scored, ranks: Array.from(ranks.subarray(from, to), Number) };
    });
  };

  const whole: number[] = [];
  // A shared prefix's keys and values stay in its prefix run's outputs (row `row` of `length` slots), read
  // from there straight into the feeds of the rows that follow it.
  const shared: { run: PrefixRun; cache?: { out: Record<string, TensorData>; row: number; length: number } }[] = [];
  for (const run of sharedPrefixRuns(requests)) {
    if (run.prefix === 0) for (let i = run.start; i < run.end; i++) whole.push(i);
    else shared.push({ run });
  }
  if (shared.length > 0) {
    // Each prefix once, the prefixes themselves packed like any rows (right padding leaves a prefix's
    // keys and values as they are alone: attention is causal).
    const { num_key_value_heads: heads, head_dim: d, num_hidden_layers: layers } = config;
    for (const group of pack(shared.map((s) => s.run.prefix))) {
      throwIfAborted(signal);
      const prefixes = group.map((k) => requests[shared[k]!.run.start]!.ids.slice(0, shared[k]!.run.prefix));
      const { feeds, length } = paddedFeeds(config, dtype, prefixes, 'right');
      const out = await (await session('prefix')).run({ ...base, ...feeds });
      group.forEach((k, row) => (shared[k]!.cache = { out, row, length }));
    }
    // The rows after their prefixes, packed together longest first whatever prompt they follow, so the
    // chains of different prompts fill a micro-batch alike. A row costs its prefix and its own tokens.
    const rows = shared.flatMap((s) => Array.from({ length: s.run.end - s.run.start }, (_, k) => ({ index: s.run.start + k, owner: s })));
    for (const group of pack(rows.map((r) => requests[r.index]!.ids.length))) {
      const members = group.map((k) => rows[k]!);
      const width = Math.max(...members.map((m) => m.owner.run.prefix));
      const mask = zeros(dtype, members.length * width);
      const extra: Record<string, TensorData> = { [SCORE_IO.prefixMask]: { dtype, dims: [members.length, width], data: mask } };
      members.forEach((m, b) => mask.fill(1, b * width, b * width + m.owner.run.prefix));
      for (let layer = 0; layer < layers; layer++) {
        [SCORE_IO.prefixKey(layer), SCORE_IO.prefixValue(layer)].forEach((name) => {
          const data = zeros(dtype, members.length * heads * width * d);
          members.forEach((m, b) => {
            const n = m.owner.run.prefix;
            const { out, row, length } = m.owner.cache!;
            const all = out[name]!.data as FloatArray;
            for (let h = 0; h < heads; h++) data.set(all.subarray((row * heads + h) * length * d, ((row * heads + h) * length + n) * d), (b * heads + h) * width * d);
          });
          extra[name] = { dtype, dims: [members.length, heads, 1, width, d], data };
        });
      }
      const tails = members.map((m) => ({ ids: requests[m.index]!.ids.slice(m.owner.run.prefix), targetStart: requests[m.index]!.targetStart - m.owner.run.prefix }));
      await run('after-prefix', members.map((m) => m.index), tails, extra, members.map((m) => m.owner.run.prefix));
    }
  }
  for (const group of pack(whole.map((i) => requests[i]!.ids.length))) {
    await run('whole', group.map((k) => whole[k]!), group.map((k) => requests[whole[k]!]!), {});
  }
  return results;
}
