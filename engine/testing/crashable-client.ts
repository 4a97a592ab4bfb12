// An engine client whose thread a test can crash between two engine operations, as a crashed thread
// would exit. Terminating a worker in the middle of a native ONNX Runtime call aborts the whole process,
// so the thread exits itself, and only a thread started in testing mode listens for the order.
import { EngineClient, startEngineThread } from '../runtime/engine-client.js';
import type { CrashMessage, EngineSource } from '../runtime/protocol.js';
import type { EngineOptions } from '../policy.js';

export class CrashableEngineClient extends EngineClient {
  static async startCrashable(source: EngineSource, options: EngineOptions): Promise<CrashableEngineClient> {
    const { worker, config } = await startEngineThread({ source, options, testing: true });
    return new CrashableEngineClient(worker, config);
  }

  /** The thread exits with `code` at its next chance. */
  crash(code = 70): void {
    this.worker.postMessage({ type: 'crash', code } satisfies CrashMessage);
  }
}
