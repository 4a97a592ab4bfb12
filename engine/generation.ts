// Generation: samples continuations with a key/value cache (prefill, then one decode run per token) or
// by full recompute (the slow reference path). The cached path bakes the weights into its sessions,
// which ONNX Runtime pre-packs (~1.5× faster decoding), so those sessions follow the parameters.
import { DroInputError } from '../dro/stats.js';
import { checkIds, paddedFeeds, parameterFeeds, zeros, type FloatArray, type FloatDType } from './batching.js';
import { EngineInputError, overflowError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import { buildDecodeGraph, buildPrefillGraph, buildSharedCacheGraph, GENERATE_IO } from './model/generate-graph.js';
import { OrtSession, type SessionOptions, type TensorData } from './ort.js';
import { resolveSamplingOptions, SequenceSampler, type SampleKey, type SamplingOptions } from './sampling.js';

export interface GenerateRequest {
  promptIds: number[];
  /** Keys every random draw of this sequence: its tokens depend on nothing else. */
  key: SampleKey;
}

export interface GenerateResult {
  ids: number[];
  /** Log-probability of each generated token under the sampling distribution. */
  logprobs: number[];
  truncated: boolean;
  stopReason: 'stop-token' | 'stop-sequence' | 'max-new-tokens' | null;
}

export interface GenerateOptions {
  /** false: recompute the whole sequence every step (the slow reference path). Default true. */
  useCache?: boolean;
  /** Checked before every decode step: an aborted call rejects with EngineAbortError. */
  signal?: AbortSignal;
  /** Called after every decode step with the number of tokens generated so far over the batch. */
  onProgress?: (generated: number) => void;
  /** When given, the seconds spent choosing tokens (outside ONNX Runtime) are added to `samplingSeconds`, for benchmarks. */
  timings?: { samplingSeconds: number };
}

/** Whether generation keeps its cache in place (GroupQueryAttention): float32, and head_dim a multiple of 8 as its CPU kernel requires. */
export function usesSharedCache(config: ModelConfig, dtype: FloatDType): boolean {
  return dtype === 'float32' && config.head_dim % 8 === 0;
}

export class Generator {
  private recomputeSession?: Promise<OrtSession>;
  private prefillSession?: Promise<OrtSession>;
  private decodeSession?: Promise<OrtSession>;
  private sharedCacheSession?: Promise<OrtSession>;
  /** The parameter map the cached sessions were built from; the engine replaces, never mutates, it. */
  private bakedFrom?: ReadonlyMap<string, FloatArray>;

  constructor(
    private readonly config: ModelConfig,
    private readonly dtype: FloatDType,
    private readonly sessionOptions: SessionOptions,
  ) {}

  /**
   * Samples a continuation of every prompt. Each sequence's draws are keyed by its own SampleKey, so
   * its tokens do not depend on the rest of the batch, on batch size, or on retries.
   */
  async generate(params: ReadonlyMap<string, FloatArray>, requests: readonly GenerateRequest[], sampling: Partial<SamplingOptions>, options: GenerateOptions): Promise<GenerateResult[]> {
    const { config, dtype } = this;
    let samplers: SequenceSampler[];
    let o: SamplingOptions;
    try {
      o = resolveSamplingOptions(sampling);
      samplers = requests.map((r) => new SequenceSampler(r.key, o));
    } catch (err) {
      // Bad sampling options or keys are a bad request like any other, whatever module noticed.
      if (err instanceof DroInputError) throw new EngineInputError(err.message, { cause: err });
      throw err;
    }
    if (requests.length === 0) return [];
    checkIds(config, requests.map((r) => r.promptIds));
    requests.forEach((r, b) => {
      if (r.promptIds.length === 0) throw new EngineInputError(`generate request ${b}: the prompt is empty`);
      if (r.promptIds.length + o.maxNewTokens > config.max_position_embeddings) {
        throw new EngineInputError(`generate request ${b}: ${r.promptIds.length} prompt tokens + ${o.maxNewTokens} new tokens exceed max_position_embeddings ${config.max_position_embeddings}`);
      }
    });
    const rows = requests.map((r) => [...r.promptIds]);
    const B = requests.length;
    const V = config.vocab_size;
    let generated = 0;

    // Samples one token for every unfinished row from logits [B, V]. Returns the token each row feeds
    // next, or undefined for a row that had already finished (it feeds a masked pad).
    const sampleStep = (logits: FloatArray): (number | undefined)[] => {
      const started = options.timings ? process.hrtime.bigint() : 0n;
      const tokens = chooseTokens(logits);
      if (options.timings) options.timings.samplingSeconds += Number(process.hrtime.bigint() - started) / 1e9;
      return tokens;
    };
    const chooseTokens = (logits: FloatArray): (number | undefined)[] =>
      samplers.map((sampler, b) => {
        if (sampler.done) return undefined;
        let token: number;
        try {
          ({ token } = sampler.next(logits.subarray(b * V, (b + 1) * V)));
        } catch (err) {
          // The options were checked above, so what the sampler refuses now is the model's own output.
          if (err instanceof DroInputError) throw overflowError(`generate request ${b}, new token ${rows[b]!.length - requests[b]!.promptIds.length}: ${err.message}`, params, err);
          throw err;
        }
        rows[b]!.push(token);
        generated++;
        return token;
      });

    if (options.useCache === false) {
      this.recomputeSession ??= OrtSession.create(buildPrefillGraph(config, dtype, false).toModelBytes(), this.sessionOptions);
      const session = await this.recomputeSession;
      const weights = parameterFeeds(config, dtype, params);
      while (!samplers.every((s) => s.done)) {
        throwIfAborted(options.signal);
        const out = await session.run({ ...weights, ...paddedFeeds(config, dtype, rows, 'left').feeds });
        sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
        options.onProgress?.(generated);
      }
      return samplers.map((s) => s.result());
    }

    if (this.bakedFrom !== params) await this.releaseCached();
    this.bakedFrom = params;
    if (usesSharedCache(config, dtype)) {
      this.sharedCacheSession ??= OrtSession.create(buildSharedCacheGraph(config, params).toModelBytes(), this.sessionOptions);
      await this.decodeInPlace(await this.sharedCacheSession, rows, samplers, sampleStep, o.maxNewTokens, options, () => options.onProgress?.(generated));
      return samplers.map((s) => s.result());
    }
    // GroupQueryAttention has no float64 kernel (float64 is for gradient checks) and needs a head size
    // that is a multiple of 8 (real models' are 64 or 128); otherwise the cache grows by Concat.
    this.prefillSession ??= OrtSession.create(buildPrefillGraph(config, dtype, true, params).toModelBytes(), this.sessionOptions);
    this.decodeSession ??= OrtSession.create(buildDecodeGraph(config, dtype, params).toModelBytes(), this.sessionOptions);
    const [prefill, decode] = await Promise.all([this.prefillSession, this.decodeSession]);
    throwIfAborted(options.signal);
    const first = paddedFeeds(config, dtype, rows, 'left').feeds;
    let out = await prefill.run(first);
    let keyMask = first.key_mask!.data as FloatArray;
    let width = first.ids!.dims[1]!;
    for (;;) {
      const tokens = sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
      options.onProgress?.(generated);
      if (samplers.every((s) => s.done)) break;
      throwIfAborted(options.signal);
      // The new token's key is visible only for rows that just sampled one; finished rows feed a masked pad.
      const nextMask = zeros(dtype, B * (width + 1));
      for (let b = 0; b < B; b++) {
        nextMask.set(keyMask.subarray(b * width, (b + 1) * width), b * (width + 1));
        nextMask[b * (width + 1) + width] = tokens[b] === undefined ? 0 : 1;
      }
      const feeds: Record<string, TensorData> = {
        ids: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(tokens, (t) => BigInt(t ?? 0)) },
        positions: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(rows, (r, b) => BigInt(tokens[b] === undefined ? 0 : r.length - 1)) },
        key_mask: { dtype, dims: [B, width + 1], data: nextMask },
      };
      for (let layer = 0; layer < config.num_hidden_layers; layer++) {
        feeds[GENERATE_IO.pastKey(layer)] = out[GENERATE_IO.presentKey(layer)]!;
        feeds[GENERATE_IO.pastValue(layer)] = out[GENERATE_IO.presentValue(layer)]!;
      }
      out = await decode.run(feeds);
      keyMask = nextMask;
      width += 1;
    }
    return samplers.map((s) => s.result());
  }

  /**
   * Prefill and decode through the shared-cache graph: one key and one value buffer per layer, sized for
   * the longest prompt plus every new token, passed as past and filled in place as present. Rows are
   * right-aligned, each at its own position; a finished row keeps feeding a pad that nothing reads.
   */
  private async decodeInPlace(
    session: OrtSession,
    rows: number[][],
    samplers: SequenceSampler[],
    sampleStep: (logits: FloatArray) => (number | undefined)[],
    maxNewTokens: number,
    options: GenerateOptions,
    progress: () => void,
  ): Promise<void> {
    const { config } = this;
    const B = rows.length;
    const lengths = rows.map((r) => r.length);
    const promptWidth = Math.max(...lengths);
    const maxLength = promptWidth + maxNewTokens;
    const cacheDims = [B, config.num_key_value_heads, maxLength, config.head_dim];
    const cacheSize = cacheDims.reduce((a, b) => a * b, 1);
    const cache: Record<string, TensorData> = {};
    for (let layer = 0; layer < config.num_hidden_layers; layer++) {
      for (const name of [GENERATE_IO.pastKey(layer), GENERATE_IO.pastValue(layer)]) cache[name] = { dtype: 'float32', dims: cacheDims, data: new Float32Array(cacheSize) };
    }
    // The same arrays are the present outputs: GroupQueryAttention sees one buffer and writes into it.
    const into: Record<string, TensorData> = {};
    for (let layer = 0; layer < config.num_hidden_layers; layer++) {
      into[GENERATE_IO.presentKey(layer)] = cache[GENERATE_IO.pastKey(layer)]!;
      into[GENERATE_IO.presentValue(layer)] = cache[GENERATE_IO.pastValue(layer)]!;
    }
    const fetch = [GENERATE_IO.lastLogits, ...Object.keys(into)];
    const int32 = (values: number[], dims: number[]): TensorData => ({ dtype: 'int32', dims, data: Int32Array.from(values) });
    const int64 = (values: number[], dims: number[]): TensorData => ({ dtype: 'int64', dims, data: BigInt64Array.from(values, (v) => BigInt(v)) });

    const prompt = paddedFeeds(config, 'float32', rows, 'right').feeds;
    let out = await session.run(
      {
        ids: prompt.ids!,
        positions: prompt.positions!,
        [GENERATE_IO.seqlensK]: int32(lengths.map((n) => n - 1), [B]),
        [GENERATE_IO.totalSequenceLength]: int32([promptWidth], []),
        [GENERATE_IO.lastIndex]: int64(lengths.map((n, b) => b * promptWidth + n - 1), [B]),
        ...cache,
      },
      fetch,
      into,
    );
    const rowIndex = int64(Array.from({ length: B }, (_, b) => b), [B]);
    for (let step = 0; ; step++) {
      const tokens = sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
      progress();
      if (samplers.every((s) => s.done)) return;
      throwIfAborted(options.signal);
      // The token sampled after `step` decode runs sits at position length + step of its row.
      const positions = lengths.map((n) => n + step);
      out = await session.run(
        {
          ids: int64(tokens.map((t) => t ?? 0), [B, 1]),
          positions: int64(positions, [B, 1]),
          [GENERATE_IO.seqlensK]: int32(positions, [B]),
          [GENERATE_IO.totalSequenceLength]: int32([Math.max(...positions) + 1], []),
          [GENERATE_IO.lastIndex]: rowIndex,
          ...cache,
        },
        fetch,
        into,
      );
    }
  }

  private async releaseCached(): Promise<void> {
    const sessions = [this.prefillSession, this.decodeSession, this.sharedCacheSession];
    this.prefillSession = this.decodeSession = this.sharedCacheSession = undefined;
    this.bakedFrom = undefined;
    for (const s of sessions) if (s) await (await s).release();
  }

  async release(): Promise<void> {
    const recompute = this.recomputeSession;
    this.recomputeSession = undefined;
    await this.releaseCached();
    if (recompute) await (await recompute).release();
  }
}
