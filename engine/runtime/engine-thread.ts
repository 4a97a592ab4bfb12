// The engine thread: owns one PolicyEngine (parameters, optimizer state, ONNX sessions) so that ONNX
// Runtime's blocking session.run never stalls the main event loop. Serves calls posted by EngineClient.
import { parentPort, workerData } from 'node:worker_threads';
import { errorToWire, throwIfAborted, type PolicyTag } from '../errors.js';
import { loadModel } from '../model/model-source.js';
import { PolicyEngine, type PolicyStateFiles, type TrainOptions } from '../policy.js';
import type { FromEngine, StartMessage, ToEngine } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread.ts must run in a worker thread');
const send = (message: FromEngine, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

async function start(): Promise<PolicyEngine> {
  const { source, options } = workerData as StartMessage;
  if (source.kind === 'init') return PolicyEngine.initialise(source.config, source.seed, options);
  const { config, params } = await loadModel(source.path);
  return PolicyEngine.fromParameters(config, params, options);
}

const inflight = new Map<number, AbortController>();
// A cancel can arrive while its call still waits in the queue.
const cancelledEarly = new Set<number>();

/** Exported bytes are fresh buffers nobody else holds, so they move to the main thread without a copy. */
function transferred(bytes: Uint8Array): { value: Uint8Array; transfer: ArrayBuffer[] } {
  return { value: bytes, transfer: [bytes.buffer as ArrayBuffer] };
}

async function dispatch(engine: PolicyEngine, method: string, args: unknown[], signal: AbortSignal, onProgress: (value: number) => void): Promise<{ value?: unknown; transfer?: ArrayBuffer[] }> {
  // Options cross the thread without signal and callback (they cannot be cloned); this thread's stand in.
  const trainOptions = (o: unknown): TrainOptions => ({ ...(o as Omit<TrainOptions, 'signal' | 'onProgress'>), signal, onProgress });
  switch (method) {
    case 'generate': {
      const [requests, sampling] = args as Parameters<PolicyEngine['generate']>;
      return { value: await engine.generate(requests, sampling, { signal, onProgress }) };
    }
    case 'score': {
      const [requests, options] = args as Parameters<PolicyEngine['score']>;
      return { value: await engine.score(requests, { ...options, signal }) };
    }
    case 'trainStep': {
      const [sequences, options, opts] = args as Parameters<PolicyEngine['trainStep']>;
      return { value: await engine.trainStep(sequences, options, trainOptions(opts)) };
    }
    case 'train': {
      const [steps, opts] = args as Parameters<PolicyEngine['train']>;
      return { value: await engine.train(steps, trainOptions(opts)) };
    }
    case 'exportParameters':
      return transferred(engine.exportParameters());
    case 'exportOptimizer':
      return transferred(engine.exportOptimizer());
    case 'exportReferencePolicy':
      return transferred(engine.exportReferencePolicy());
    case 'exportBaseParameters':
      return transferred(engine.exportBaseParameters());
    case 'baseDigest':
      return { value: engine.baseDigest() };
    case 'importParameters':
      engine.importParameters(...(args as Parameters<PolicyEngine['importParameters']>));
      return {};
    case 'importOptimizer':
      engine.importOptimizer(...(args as Parameters<PolicyEngine['importOptimizer']>));
      return {};
    case 'loadState':
      engine.loadState(args[0] as PolicyStateFiles);
      return {};
    case 'freezeReferencePolicy':
      engine.freezeReferencePolicy();
      return {};
    case 'resetOptimizer':
      engine.resetOptimizer();
      return {};
    case 'tag':
      return { value: engine.tag };
    case 'setTag':
      engine.setTag(args[0] as PolicyTag | undefined);
      return {};
    case 'step':
      return { value: engine.step };
    case 'dispose':
      await engine.release();
      return {};
    default:
      throw new Error(`unknown engine method ${method}`);
  }
}

async function serve(engine: PolicyEngine, id: number, method: string, args: unknown[]): Promise<void> {
  const controller = new AbortController();
  if (cancelledEarly.delete(id)) controller.abort(new Error('cancelled'));
  inflight.set(id, controller);
  try {
    throwIfAborted(controller.signal);
    const { value, transfer } = await dispatch(engine, method, args, controller.signal, (value) => send({ type: 'progress', id, value }));
    send({ type: 'result', id, value }, transfer);
  } catch (err) {
    send({ type: 'error', id, error: errorToWire(err) });
  } finally {
    inflight.delete(id);
  }
}

start().then(
  (engine) => {
    // Calls run one at a time, in order: the engine's state (parameters, optimizer) is not shared.
    let queue = Promise.resolve();
    port.on('message', (message: ToEngine) => {
      if (message.type === 'crash') process.exit(message.code);
      if (message.type === 'cancel') {
        const running = inflight.get(message.id);
        if (running) running.abort(new Error('cancelled'));
        else cancelledEarly.add(message.id);
        return;
      }
      queue = queue.then(() => serve(engine, message.id, message.method, message.args));
    });
    send({ type: 'ready', config: engine.config });
  },
  (err: unknown) => send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) }),
);
