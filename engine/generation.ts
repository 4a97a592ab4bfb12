// Generation: samples continuations with a key/value cache (prefill, then one decode run per token) or
// by full recompute (the slow reference path). The cached path bakes the weights into its sessions,
// which ONNX Runtime pre-packs (~1.5× faster decoding), so those sessions follow the parameters.
import { checkIds, paddedFeeds, parameterFeeds } from './batching.js';
import { zeros, type FloatArray, type FloatDType } from './float-arrays.js';
import { EngineInputError, overflowError, throwIfAborted } from './errors.js';
import type { ModelConfig } from './model/config.js';
import { buildFixedCacheDecodeGraph, buildPrefillGraph, GENERATE_IO } from './model/generate-graph.js';
import { OrtSession, type SessionOptions, type TensorData } from './ort.js';
import { HELPER_MIN_LOGITS, SamplingHelper } from './sampling-helper.js';
import { checkedSamplingOptions, SequenceSampler, type SampleKey, type SamplingOptions } from './sampling.js';

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
  /**
   * Threads that choose tokens: 2 (the default) lets a helper thread take half the rows when the batch
   * has enough logits; 1 chooses every row on the engine thread. The tokens are the same either way.
   */
  samplingThreads?: 1 | 2;
}

/** GenerateOptions for a caller in the engine's own thread (a benchmark), since a thread cannot write into the caller's objects. */
export interface TimedGenerateOptions extends GenerateOptions {
  /** The seconds spent choosing tokens (outside ONNX Runtime) are added to `samplingSeconds`. */
  timings?: { samplingSeconds: number };
}

export class Generator {
  private recomputeSession?: Promise<OrtSession>;
  private prefillSession?: Promise<OrtSession>;
  private decodeSession?: Promise<OrtSession>;
  private quietDecodeSession?: Promise<OrtSession>;
  private helper?: Promise<SamplingHelper>;
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
  async generate(params: ReadonlyMap<string, FloatArray>, requests: readonly GenerateRequest[], sampling: SamplingOptions, options: TimedGenerateOptions): Promise<GenerateResult[]> {
    const { config, dtype } = this;
    const o = checkedSamplingOptions(sampling);
    const samplers = requests.map((r) => new SequenceSampler(r.key, o));
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
    const helperEligible = (rowCount: number): boolean => options.samplingThreads !== 1 && dtype === 'float32' && rowCount >= 2 && rowCount * V >= HELPER_MIN_LOGITS;
    const sampleStep = async (logits: FloatArray): Promise<(number | undefined)[]> => {
      const started = options.timings ? process.hrtime.bigint() : 0n;
      const tokens = await chooseTokens(logits);
      if (options.timings) options.timings.samplingSeconds += Number(process.hrtime.bigint() - started) / 1e9;
      return tokens;
    };
    // The options were checked above, so what a sampler refuses now is the model's own output.
    const modelFault = (b: number, err: unknown): unknown =>
      err instanceof EngineInputError ? overflowError(`generate request ${b}, new token ${rows[b]!.length - requests[b]!.promptIds.length}: ${err.message}`, params, err) : err;
    const chooseTokens = async (logits: FloatArray): Promise<(number | undefined)[]> => {
      const active = samplers.flatMap((s, b) => (s.done ? [] : [b]));
      // With enough logits, the later half of the rows is chosen on the helper thread meanwhile.
      const split = helperEligible(active.length) ? Math.ceil(active.length / 2) : active.length;
      const remoteRows = active.slice(split);
      let remote: Promise<{ token: number; logprob: number }[]> | undefined;
      if (remoteRows.length > 0) {
        const helper = await (this.helper ??= SamplingHelper.start());
        remote = helper.choose(
          remoteRows.map((b) => (logits as Float32Array).subarray(b * V, (b + 1) * V)),
          V,
          remoteRows.map((b) => samplers[b]!.request()),
        );
      }
      const chosen = new Map<number, number>();
      try {
        for (const b of active.slice(0, split)) {
          try {
            chosen.set(b, samplers[b]!.next(logits.subarray(b * V, (b + 1) * V)).token);
          } catch (err) {
            throw modelFault(b, err);
          }
        }
      } catch (err) {
        await remote?.catch(() => undefined);
        throw err;
      }
      if (remote) {
        let choices: { token: number; logprob: number }[];
        try {
          choices = await remote;
        } catch (err) {
          throw modelFault((err as { row?: number }).row === undefined ? remoteRows[0]! : remoteRows[(err as { row: number }).row]!, err);
        }
        remoteRows.forEach((b, i) => chosen.set(b, samplers[b]!.record(choices[i]!, V).token));
      }
      return samplers.map((_, b) => {
        const token = chosen.get(b);
        if (token === undefined) return undefined;
        rows[b]!.push(token);
        generated++;
        return token;
      });
    };

    if (options.useCache === false) {
      this.recomputeSession ??= OrtSession.create(buildPrefillGraph(config, dtype, false).toModelBytes(), this.sessionOptions);
      const session = await this.recomputeSession;
      const weights = parameterFeeds(config, dtype, params);
      while (!samplers.every((s) => s.done)) {
        throwIfAborted(options.signal);
        const out = await session.run({ ...weights, ...paddedFeeds(config, dtype, rows, 'left').feeds });
        await sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
        options.onProgress?.(generated);
      }
      return samplers.map((s) => s.result());
    }

    if (this.bakedFrom !== params) await this.releaseCached();
    this.bakedFrom = params;
    this.prefillSession ??= OrtSession.create(buildPrefillGraph(config, dtype, true, params).toModelBytes(), this.sessionOptions);
    // When a helper thread chooses half the tokens, ONNX Runtime's threads must not spin-wait meanwhile
    // on the same two cores, so they stop at the end of each run; a batch chosen on one thread (batch 1)
    // is a little faster with them spinning throughout.
    const newDecodeSession = (spinning: 'always' | 'in-run'): Promise<OrtSession> => OrtSession.create(buildFixedCacheDecodeGraph(config, dtype, params).toModelBytes(), { ...this.sessionOptions, spinning });
    const decodeSession = helperEligible(B) ? (this.quietDecodeSession ??= newDecodeSession('in-run')) : (this.decodeSession ??= newDecodeSession('always'));
    const [prefill, decode] = await Promise.all([this.prefillSession, decodeSession]);
    throwIfAborted(options.signal);
    const first = paddedFeeds(config, dtype, rows, 'left').feeds;
    let out = await prefill.run(first);
    // The cache: per layer a key and a value buffer with a slot for every prompt position and every new
    // token. Left padding puts step j's token of every row in the same slot, width + j.
    const width = first.ids!.dims[1]!;
    const slots = width + o.maxNewTokens;
    const kv = config.num_key_value_heads;
    const d = config.head_dim;
    const cacheDims = [B, kv, 1, slots, d];
    const cache: Record<string, TensorData> = {};
    const keyMask = zeros(dtype, B * slots);
    const prompt = first.key_mask!.data as FloatArray;
    for (let b = 0; b < B; b++) keyMask.set(prompt.subarray(b * width, (b + 1) * width), b * slots);
    // Each buffer is fed as past.* and filled from present.*, which holds `width` positions after the
    // prefill and one position after each decode run; `at` is the slot of the first.
    const buffers = Array.from({ length: config.num_hidden_layers }, (_, layer): [string, string][] => [
      [GENERATE_IO.pastKey(layer), GENERATE_IO.presentKey(layer)],
      [GENERATE_IO.pastValue(layer), GENERATE_IO.presentValue(layer)],
    ]).flat();
    const writeCache = (positions: number, at: number): void => {
      for (const [past, present] of buffers) {
        const buffer = cache[past]!.data as FloatArray;
        const fresh = out[present]!.data as FloatArray;
        for (let row = 0; row < B * kv; row++) buffer.set(fresh.subarray(row * positions * d, (row + 1) * positions * d), (row * slots + at) * d);
      }
    };
    for (const [past] of buffers) cache[past] = { dtype, dims: cacheDims, data: zeros(dtype, B * kv * slots * d) };
    writeCache(width, 0);
    const mask: TensorData = { dtype, dims: [B, slots], data: keyMask };
    for (let step = 0; ; step++) {
      const tokens = await sampleStep(out[GENERATE_IO.lastLogits]!.data as FloatArray);
      options.onProgress?.(generated);
      if (samplers.every((s) => s.done)) break;
      throwIfAborted(options.signal);
      out = await decode.run({
        ids: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(tokens, (t) => BigInt(t ?? 0)) },
        positions: { dtype: 'int64', dims: [B, 1], data: BigInt64Array.from(rows, (r, b) => BigInt(tokens[b] === undefined ? 0 : r.length - 1)) },
        key_mask: mask,
        ...cache,
      });
      // The new token's key and value go into slot width + step; only rows that sampled one may see it.
      const slot = width + step;
      writeCache(1, slot);
      for (let b = 0; b < B; b++) if (tokens[b] !== undefined) keyMask[b * slots + slot] = 1;
    }
    return samplers.map((s) => s.result());
  }

  private async releaseCached(): Promise<void> {
    const sessions = [this.prefillSession, this.decodeSession, this.quietDecodeSession];
    this.prefillSession = this.decodeSession = this.quietDecodeSession = undefined;
    this.bakedFrom = undefined;
    for (const s of sessions) if (s) await (await s).release();
  }

  async release(): Promise<void> {
    const recompute = this.recomputeSession;
    this.recomputeSession = undefined;
    await this.releaseCached();
    if (recompute) await (await recompute).release();
    const helper = this.helper;
    this.helper = undefined;
    if (helper) await (await helper).close();
  }
}
