// The one module that imports onnxruntime-node: sessions with fixed thread counts (so results are
// reproducible) and plain typed arrays in and out, so the rest of the engine never sees ORT types.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as ort from 'onnxruntime-node';
import { EngineInputError } from './errors.js';
import { dispatchFeatures, type RuntimeFingerprint } from './fingerprint.js';
import type { DType } from './onnx/graph.js';

export interface SessionOptions {
  /** Intra-op threads; fixed per session because results must not depend on the machine's core count. */
  intraOpThreads: number;
  executionProvider?: 'cpu' | 'cuda';
  /**
   * 'all' lets ONNX Runtime fuse operators into its contrib kernels; several of those exist only for
   * float32, so float64 graphs (gradient checks) use 'basic'.
   */
  optimization?: 'basic' | 'all';
  /**
   * ONNX Runtime's memory pattern (default on) plans one contiguous block per input shape after the
   * first run. For the training step that is a second 1.7 GB block whose pages fault in on step 2, for
   * no steady-state gain (engine profile, experiment E3), so training sessions turn it off.
   */
  memoryPattern?: boolean;
  /**
   * When ONNX Runtime's idle intra-op threads spin-wait for the next op: 'always' (the default), or
   * 'in-run': within a run, stopping when it returns (`session.force_spinning_stop`), so JavaScript
   * work between two runs (the generator choosing tokens on two threads) has both cores. Not spinning
   * at all made a batch-16 decode run about 17% slower: every op then waits for a thread to wake.
   */
  spinning?: 'always' | 'in-run';
  /**
   * ONNX Runtime's CPU arena (default on) keeps every block it ever allocated for reuse and splits them
   * for smaller requests, so a training graph's peak grows by fragmentation and is never given back.
   * Off, each tensor is allocated and freed on its own (large ones are mapped and unmapped).
   */
  memoryArena?: boolean;
}

export type ArrayData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface TensorData {
  dtype: DType;
  dims: number[];
  data: ArrayData;
}

const ORT_TYPE: Record<DType, ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32', bool: 'bool' };

export class OrtSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly outputNames: readonly string[],
  ) {}

  static async create(modelBytes: Uint8Array, options: SessionOptions): Promise<OrtSession> {
    // ONNX Runtime would take a missing count as "every core", and results would follow the machine.
    if (!Number.isSafeInteger(options.intraOpThreads) || options.intraOpThreads < 1) throw new EngineInputError(`intraOpThreads must be an integer ≥ 1, got ${options.intraOpThreads}`);
    const session = await ort.InferenceSession.create(modelBytes, {
      intraOpNumThreads: options.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: options.optimization ?? 'all',
      enableMemPattern: options.memoryPattern ?? true,
      enableCpuMemArena: options.memoryArena ?? true,
      ...(options.spinning === 'in-run' ? { extra: { session: { force_spinning_stop: '1' } } } : {}),
      executionProviders: [options.executionProvider ?? 'cpu'],
    });
    return new OrtSession(session, session.outputNames);
  }

  async run(feeds: Record<string, TensorData>, fetch?: string[]): Promise<Record<string, TensorData>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    // onnxruntime-node reads CPU inputs in place, so a large buffer (a KV cache) costs nothing to feed.
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(ORT_TYPE[t.dtype], t.data, t.dims);
    const results = fetch ? await this.session.run(ortFeeds, fetch) : await this.session.run(ortFeeds);
    const out: Record<string, TensorData> = {};
    for (const [name, t] of Object.entries(results)) {
      out[name] = { dtype: t.type as DType, dims: [...t.dims], data: t.data as ArrayData };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

let collect: (() => void) | undefined;

/**
 * Frees the buffers of outputs nothing references any more. onnxruntime-node hands outputs to
 * JavaScript as external buffers V8 does not count toward its heap, so the gradients and optimizer
 * state a training run replaces (hundreds of MB per run) stayed mapped until a collection V8 saw no
 * reason to start: the process grew by gigabytes over a few updates, and every run faulted in fresh
 * pages instead of reusing freed ones. A full collection costs milliseconds; call it before large runs
 * only (engine/training.ts: before each gradient and optimizer run), never per decoded token.
 */
export function releaseUnreferencedOutputs(): void {
  if (!collect) {
    // V8 gives a new context the gc function once the flag is set, whether or not node started with it.
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}

export type RuntimeInfo = Omit<RuntimeFingerprint, 'intraOpThreads' | 'executionProvider'>;

let cpuFeatures: string[] | null | undefined;

/** This machine's part of the runtime fingerprint (engine/fingerprint.ts): ONNX Runtime's version and what its kernels dispatch on. */
export function runtimeInfo(): RuntimeInfo {
  if (cpuFeatures === undefined) {
    let text = '';
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // Not Linux: the features stay unknown and the fingerprint compares CPU model names instead.
    }
    cpuFeatures = dispatchFeatures(text, process.arch);
  }
  return { onnxruntimeVersion: ort.env.versions.node ?? ort.env.versions.common, cpuModel: cpus()[0]?.model.trim() || 'unknown', arch: process.arch, cpuFeatures };
}

/** The fingerprint of sessions this process runs with `options`' threads and provider. */
export const runtimeFingerprint = (options: { intraOpThreads: number; executionProvider: string }): RuntimeFingerprint => ({
  ...runtimeInfo(),
  intraOpThreads: options.intraOpThreads,
  executionProvider: options.executionProvider,
});
