// The sampling helper's thread (engine/sampling-helper.ts): chooses a token for each row it is sent with
// sampleToken, the engine thread's own function, and replies in order.
import { parentPort } from 'node:worker_threads';
import { EngineInputError } from './errors.js';
import { sampleToken, type SampleKey, type SamplingOptions } from './sampling.js';

interface Job {
  id: number;
  logits: SharedArrayBuffer;
  vocab: number;
  requests: { key: SampleKey; position: number; options: SamplingOptions }[];
}

const port = parentPort!;
port.on('message', ({ id, logits, vocab, requests }: Job) => {
  // The buffer is reused and may be longer than this request's rows.
  const rows = new Float32Array(logits, 0, requests.length * vocab);
  const choices: { token: number; logprob: number }[] = [];
  for (const [i, r] of requests.entries()) {
    try {
      choices.push(sampleToken(rows.subarray(i * vocab, (i + 1) * vocab), r.key, r.position, r.options));
    } catch (err) {
      port.postMessage({ id, error: err instanceof Error ? err.message : String(err), input: err instanceof EngineInputError, row: i });
      return;
    }
  }
  port.postMessage({ id, choices });
});
port.postMessage({ ready: true });
