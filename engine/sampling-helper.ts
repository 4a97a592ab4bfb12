// A second thread for choosing tokens: between two decode runs ONNX Runtime's threads are idle, and
// choosing among 49k logits per row in JavaScript is a fifth to a half of a batch-16 step, so half the
// rows are chosen here while the engine thread does the other half. It runs sampleToken, the same pure
// function of (logits, key, position, options) the engine thread runs, so a token never depends on
// which thread chose it.
import { Worker } from 'node:worker_threads';
import { EngineInputError } from './errors.js';
import type { SampleKey, SamplingOptions } from './sampling.js';

export interface ChoiceRequest {
  key: SampleKey;
  position: number;
  options: SamplingOptions;
}

type Reply = { id: number; choices: { token: number; logprob: number }[] } | { id: number; error: string; input: boolean; row: number };

// Resolved like any import, so the helper also starts where this package is a dependency.
const TSX_API = import.meta.resolve('tsx/esm/api');
const THREAD_MAIN = new URL('./sampling-thread.ts', import.meta.url).href;
const BOOTSTRAP = `import(${JSON.stringify(TSX_API)}).then(({ register }) => { register(); return import(${JSON.stringify(THREAD_MAIN)}); })`;

/** Rows below this many logits in total are chosen on the calling thread: the round trip would cost more. */
export const HELPER_MIN_LOGITS = 65_536;

export class SamplingHelper {
  private nextId = 0;
  private buffer?: SharedArrayBuffer;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: Reply) => {
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      w?.resolve(reply);
    });
    worker.on('error', (err: Error) => this.failAll(err));
    worker.on('exit', (code) => this.failAll(new Error(`the sampling thread exited (code ${code})`)));
    // Idle, the thread must not keep the process alive; while a reply is awaited, it must.
    worker.unref();
  }

  static start(): Promise<SamplingHelper> {
    const worker = new Worker(BOOTSTRAP, { eval: true });
    return new Promise((resolve, reject) => {
      const onReady = (m: unknown): void => {
        if ((m as { ready?: boolean }).ready) {
          worker.off('message', onReady);
          worker.off('error', reject);
          resolve(new SamplingHelper(worker));
        }
      };
      worker.on('message', onReady);
      worker.once('error', reject);
    });
  }

  /**
   * Chooses a token for each row (`vocab` logits each, copied to the thread). Input errors come back
   * as EngineInputError, as the calling thread's own sampler throws them, with `row` the index of the
   * first row that failed.
   */
  async choose(rows: readonly Float32Array[], vocab: number, requests: ChoiceRequest[]): Promise<{ token: number; logprob: number }[]> {
    const bytes = rows.length * vocab * Float32Array.BYTES_PER_ELEMENT;
    // One buffer serves every request while none overlap: a fresh 1.5 MB buffer per decode step cost
    // about 1 ms in page faults, more than half a row's choice.
    let shared = this.buffer;
    if (!shared || shared.byteLength < bytes || this.waiting.size > 0) {
      shared = new SharedArrayBuffer(bytes);
      if (this.waiting.size === 0) this.buffer = shared;
    }
    const view = new Float32Array(shared, 0, rows.length * vocab);
    rows.forEach((row, i) => {
      if (row.length !== vocab) throw new Error(`sampling helper: row ${i} has ${row.length} logits, not ${vocab}`);
      view.set(row, i * vocab);
    });
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, logits: shared, vocab, requests });
    });
    if ('error' in reply) throw Object.assign(reply.input ? new EngineInputError(reply.error) : new Error(reply.error), { row: reply.row });
    return reply.choices;
  }

  async close(): Promise<void> {
    this.failAll(new Error('the sampling thread was closed'));
    await this.worker.terminate();
  }

  private failAll(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}
