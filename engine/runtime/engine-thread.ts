// The engine thread: owns one PolicyEngine (parameters, optimizer state, ONNX sessions) so that ONNX
// Runtime's blocking session.run never stalls the main event loop. Serves calls posted by EngineClient.
import { parentPort, workerData } from 'node:worker_threads';
import { loadModelDir } from '../model/model-dir.js';
import { PolicyEngine } from '../policy.js';
import type { FromEngine, StartMessage, ToEngine } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread.ts must run in a worker thread');
const send = (message: FromEngine, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

async function start(): Promise<PolicyEngine> {
  const { source, options } = workerData as StartMessage;
  if (source.kind === 'init') return PolicyEngine.initialise(source.config, source.seed, options);
  const { config, params } = await loadModelDir(source.dir);
  return PolicyEngine.fromParameters(config, params, options);
}

const inflight = new Map<number, AbortController>();
// A cancel can arrive while its call still waits in the queue.
const cancelledEarly = new Set<number>();

async function serve(engine: PolicyEngine, id: number, method: string, args: unknown[]): Promise<void> {
  const controller = new AbortController();
  if (cancelledEarly.delete(id)) controller.abort(new Error('cancelled'));
  inflight.set(id, controller);
  const progress = (value: number): void => send({ type: 'progress', id, value });
  try {
    let value: unknown;
    let transfer: ArrayBuffer[] = [];
    controller.signal.throwIfAborted();
    switch (method) {
      case 'generate': {
        const [requests, sampling] = args as Parameters<PolicyEngine['generate']>;
        value = await engine.generate(requests, sampling, { signal: controller.signal, onProgress: progress });
        break;
      }
      case 'score':
        value = await engine.score(...(args as Parameters<PolicyEngine['score']>));
        break;
      case 'trainStep':
        value = await engine.trainStep(...(args as Parameters<PolicyEngine['trainStep']>));
        break;
      case 'exportParameters':
      case 'exportOptimizer': {
        const bytes = method === 'exportParameters' ? engine.exportParameters() : engine.exportOptimizer();
        value = bytes;
        transfer = [bytes.buffer as ArrayBuffer];
        break;
      }
      case 'importParameters':
        engine.importParameters(...(args as Parameters<PolicyEngine['importParameters']>));
        break;
      case 'importOptimizer':
        engine.importOptimizer(...(args as Parameters<PolicyEngine['importOptimizer']>));
        break;
      case 'step':
        value = engine.step;
        break;
      case 'dispose':
        await engine.release();
        break;
      default:
        throw new Error(`unknown engine method ${method}`);
    }
    send({ type: 'result', id, value }, transfer);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    send({ type: 'error', id, name: controller.signal.aborted ? 'AbortError' : e.name, message: e.message });
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
