// The main thread's handle on an engine thread: typed calls that return promises, cancellation by
// AbortSignal, progress callbacks, the engine's own error classes on this side, and EngineThreadError
// for every pending call if the thread dies.
import { Worker } from 'node:worker_threads';
import type { PolicyStateFiles, RemoteEngineApi, TrainOptions } from '../api.js';
import { abortError, EngineAbortError, errorFromWire, EngineThreadError, type PolicyTag } from '../errors.js';
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../generation.js';
import type { ModelConfig } from '../model/config.js';
import type { EngineOptions } from '../policy.js';
import type { SamplingOptions } from '../sampling.js';
import type { ScoreOptions, ScoreRequest, ScoreResult } from '../scoring.js';
import type { TrainStep, TrainStepResult } from '../training.js';
import type { CallMessage, EngineAnswer, EngineMethod, EngineSource, FromEngine, StartMessage, ToEngine, WireArgs } from './protocol.js';

interface CallOptions {
  signal?: AbortSignal;
  onProgress?: (value: number) => void;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onProgress?: (value: number) => void;
}

// Resolved like any import, so the engine thread also starts where this package is a dependency.
const TSX_API = import.meta.resolve('tsx/esm/api');
const THREAD_MAIN = new URL('./engine-thread.ts', import.meta.url).href;
// The thread runs our TypeScript through tsx, registered inside the thread (loader hooks of the main
// thread do not reach worker threads on Node 20).
const BOOTSTRAP = `import(${JSON.stringify(TSX_API)}).then(({ register }) => { register(); return import(${JSON.stringify(THREAD_MAIN)}); })`;

/**
 * The buffers behind `views` that can move to the engine thread. A view over part of a buffer (a pooled
 * Buffer, a slice of a bigger file) is copied instead: detaching its buffer would break its neighbours.
 */
function transferable(...views: (Uint8Array | null | undefined)[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const v of views) {
    if (v && v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) buffers.add(v.buffer);
  }
  return [...buffers];
}

/**
 * Starts an engine thread and waits until its model is ready. (EngineClient.start for production;
 * engine/testing/crashable-client.ts starts one in testing mode.)
 */
export function startEngineThread(start: StartMessage): Promise<{ worker: Worker; config: ModelConfig }> {
  const worker = new Worker(BOOTSTRAP, { eval: true, workerData: start });
  return new Promise((resolve, reject) => {
    const onMessage = (message: FromEngine): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      if (message.type === 'ready') resolve({ worker, config: message.config });
      else {
        reject(new EngineThreadError(`engine thread could not start: ${message.type === 'fatal' ? message.message : 'unexpected message'}`));
        void worker.terminate();
      }
    };
    const onError = (err: Error): void => reject(new EngineThreadError(`engine thread could not start: ${err.message}`));
    worker.on('message', onMessage);
    worker.once('error', onError);
  });
}

/** The engine's methods from another thread (EngineApi, each answering with a promise); its release is dispose(), which also stops the thread. */
export class EngineClient implements Omit<RemoteEngineApi, 'release'> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead?: EngineThreadError;

  protected constructor(
    protected readonly worker: Worker,
    readonly config: ModelConfig,
  ) {
    worker.on('message', (message: FromEngine) => this.onMessage(message));
    worker.on('error', (err) => this.die(`engine thread crashed: ${err.message}`));
    worker.on('exit', (code) => this.die(`engine thread exited (code ${code})`));
  }

  /** Starts an engine thread and waits until its model is ready. */
  static async start(source: EngineSource, options: EngineOptions): Promise<EngineClient> {
    const { worker, config } = await startEngineThread({ source, options });
    return new EngineClient(worker, config);
  }

  private onMessage(message: FromEngine): void {
    if (message.type === 'ready') return;
    if (message.type === 'fatal') return this.die(`engine thread failed: ${message.message}`);
    const call = this.pending.get(message.id);
    if (!call) return;
    if (message.type === 'progress') return call.onProgress?.(message.value);
    this.pending.delete(message.id);
    if (message.type === 'result') call.resolve(message.value);
    else call.reject(errorFromWire(message.error));
  }

  private die(reason: string): void {
    if (this.dead) return;
    this.dead = new EngineThreadError(reason);
    for (const call of this.pending.values()) call.reject(this.dead);
    this.pending.clear();
  }

  /**
   * A cancelled call still waits for the thread's answer: only then is it certain whether the call
   * took effect (an update that finished first is committed and resolves normally).
   */
  private call<K extends EngineMethod>(method: K, args: WireArgs<K>, options: CallOptions = {}, transfer: ArrayBuffer[] = []): Promise<EngineAnswer<K>> {
    if (this.dead) return Promise.reject(this.dead);
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal.reason));
    const id = this.nextId++;
    return new Promise<EngineAnswer<K>>((resolve, reject) => {
      const onAbort = (): void => this.worker.postMessage({ type: 'cancel', id } satisfies ToEngine);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => options.signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (v) => {
          done();
          resolve(v as EngineAnswer<K>);
        },
        reject: (e) => {
          done();
          // The thread only knows it was cancelled; the caller's reason says why.
          reject(e instanceof EngineAbortError && options.signal?.aborted ? abortError(options.signal.reason) : e);
        },
        onProgress: options.onProgress,
      });
      const message: CallMessage<K> = { type: 'call', id, method, args };
      this.worker.postMessage(message, transfer);
    });
  }

  generate(requests: readonly GenerateRequest[], sampling: SamplingOptions, options: GenerateOptions = {}): Promise<GenerateResult[]> {
    const { signal, onProgress, ...generateOptions } = options;
    return this.call('generate', [requests, sampling, generateOptions], { signal, onProgress });
  }
  score(requests: readonly ScoreRequest[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const { signal, ...scoreOptions } = options;
    return this.call('score', [requests, scoreOptions], { signal });
  }
  /** All updates or none (see PolicyEngine.train). */
  train(steps: readonly TrainStep[], options: TrainOptions = {}): Promise<TrainStepResult[]> {
    const { signal, onProgress, ...trainOptions } = options;
    return this.call('train', [steps, trainOptions], { signal, onProgress });
  }
  tag(): Promise<PolicyTag | undefined> {
    return this.call('tag', []);
  }
  setTag(tag: PolicyTag | undefined): Promise<void> {
    return this.call('setTag', [tag]);
  }
  /** Sends the files to the engine thread; buffers a view spans whole are transferred (detached), others copied. */
  loadState(files: PolicyStateFiles): Promise<void> {
    return this.call('loadState', [files], {}, transferable(files.parameters, files.optimizer, files.reference));
  }
  freezeReferencePolicy(): Promise<void> {
    return this.call('freezeReferencePolicy', []);
  }
  resetOptimizer(): Promise<void> {
    return this.call('resetOptimizer', []);
  }
  exportParameters(): Promise<Uint8Array> {
    return this.call('exportParameters', []);
  }
  exportOptimizer(): Promise<Uint8Array> {
    return this.call('exportOptimizer', []);
  }
  exportReferencePolicy(): Promise<Uint8Array> {
    return this.call('exportReferencePolicy', []);
  }
  exportBaseParameters(): Promise<Uint8Array> {
    return this.call('exportBaseParameters', []);
  }
  /** Under LoRA: sha256 of the frozen base weights (see PolicyEngine.baseDigest). */
  baseDigest(): Promise<string> {
    return this.call('baseDigest', []);
  }

  /** Releases the sessions and stops the thread. */
  async dispose(): Promise<void> {
    if (!this.dead) await this.call('release', []).catch(() => undefined);
    this.dead ??= new EngineThreadError('engine thread disposed');
    await this.worker.terminate();
  }
}
