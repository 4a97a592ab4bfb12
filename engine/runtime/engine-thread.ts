// The engine thread: owns one PolicyEngine (parameters, optimizer state, ONNX sessions) so that ONNX
// Runtime's blocking session.run never stalls the main event loop. Serves calls posted by EngineClient.
import { parentPort, workerData } from 'node:worker_threads';
import { errorToWire, throwIfAborted } from '../errors.js';
import { loadModel } from '../model/model-source.js';
import { PolicyEngine } from '../policy.js';
import type { CallMessage, CrashMessage, EngineAnswer, EngineMethod, FromEngine, StartMessage, ToEngine, WireArgs } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread.ts must run in a worker thread');
const send = (message: FromEngine, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

const { source, options, testing = false } = workerData as StartMessage;

async function start(): Promise<PolicyEngine> {
  if (source.kind === 'init') return PolicyEngine.initialise(source.config, source.seed, options);
  const { config, params } = await loadModel(source.path);
  return PolicyEngine.fromParameters(config, params, options);
}

const inflight = new Map<number, AbortController>();
// A cancel can arrive while its call still waits in the queue.
const cancelledEarly = new Set<number>();

/** What a handler answers: the value, and the buffers that move to the main thread instead of being copied. */
interface Answer<K extends EngineMethod> {
  value: EngineAnswer<K>;
  transfer?: ArrayBuffer[];
}

/** Exported bytes are fresh buffers nobody else holds, so they move to the main thread without a copy. */
const moved = (bytes: Uint8Array): { value: Uint8Array; transfer: ArrayBuffer[] } => ({ value: bytes, transfer: [bytes.buffer as ArrayBuffer] });

/** This thread's stand-ins for what a call's options cannot carry across: the cancellation signal and the progress callback. */
interface Local {
  signal: AbortSignal;
  onProgress: (value: number) => void;
}

type Handlers = { [K in EngineMethod]: (engine: PolicyEngine, args: WireArgs<K>, local: Local) => Answer<K> | Promise<Answer<K>> };

const handlers: Handlers = {
  generate: async (engine, [requests, sampling, options], local) => ({ value: await engine.generate(requests, sampling, { ...options, ...local }) }),
  score: async (engine, [requests, options], { signal }) => ({ value: await engine.score(requests, { ...options, signal }) }),
  train: async (engine, [steps, options], local) => ({ value: await engine.train(steps, { ...options, ...local }) }),
  tag: (engine) => ({ value: engine.tag() }),
  setTag: (engine, [tag]) => ({ value: engine.setTag(tag) }),
  loadState: (engine, [files]) => ({ value: engine.loadState(files) }),
  freezeReferencePolicy: (engine) => ({ value: engine.freezeReferencePolicy() }),
  resetOptimizer: (engine) => ({ value: engine.resetOptimizer() }),
  exportParameters: (engine) => moved(engine.exportParameters()),
  exportOptimizer: (engine) => moved(engine.exportOptimizer()),
  exportReferencePolicy: (engine) => moved(engine.exportReferencePolicy()),
  exportBaseParameters: (engine) => moved(engine.exportBaseParameters()),
  baseDigest: (engine) => ({ value: engine.baseDigest() }),
  release: async (engine) => ({ value: await engine.release() }),
};

function dispatch<K extends EngineMethod>(engine: PolicyEngine, call: CallMessage<K>, local: Local): Answer<K> | Promise<Answer<K>> {
  return handlers[call.method](engine, call.args, local);
}

async function serve(engine: PolicyEngine, call: CallMessage): Promise<void> {
  const { id } = call;
  const controller = new AbortController();
  if (cancelledEarly.delete(id)) controller.abort(new Error('cancelled'));
  inflight.set(id, controller);
  try {
    throwIfAborted(controller.signal);
    const { value, transfer } = await dispatch(engine, call, { signal: controller.signal, onProgress: (value) => send({ type: 'progress', id, value }) });
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
    port.on('message', (message: ToEngine | CrashMessage) => {
      if (message.type === 'crash') {
        if (testing) process.exit(message.code);
        return;
      }
      if (message.type === 'cancel') {
        const running = inflight.get(message.id);
        if (running) running.abort(new Error('cancelled'));
        else cancelledEarly.add(message.id);
        return;
      }
      queue = queue.then(() => serve(engine, message));
    });
    send({ type: 'ready', config: engine.config });
  },
  (err: unknown) => send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) }),
);
