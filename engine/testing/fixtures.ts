// Test-only helpers shared by the engine's tests: engines released after the file's tests, keyed random
// ids, and one training update through the engine's API.
import { afterAll } from 'vitest';
import { uniform } from '../../dro/random.js';
import type { EngineApi, RemoteEngineApi, TrainOptions } from '../api.js';
import type { PolicyEngine } from '../policy.js';
import type { TrainSequence, TrainStepOptions, TrainStepResult } from '../training.js';

/** A `track` that remembers each engine it is given and releases them all after the file's tests. */
export function releasedAfterAll(): (engine: PolicyEngine) => PolicyEngine {
  const engines: PolicyEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.release();
  });
  return (engine) => {
    engines.push(engine);
    return engine;
  };
}

/** `n` token ids below `vocab`, drawn from the keyed generator under (purpose, key). */
export const randomIds = (purpose: string, key: string, n: number, vocab: number): number[] => Array.from({ length: n }, (_, i) => Math.floor(uniform([purpose, key, i]) * vocab));

/** One update through `train` (the engine has no one-step method): in-process or on an engine thread. */
export async function trainStep(engine: Pick<EngineApi | RemoteEngineApi, 'train'>, sequences: readonly TrainSequence[], options: TrainStepOptions, opts: TrainOptions = {}): Promise<TrainStepResult> {
  const [result] = await engine.train([{ sequences, options }], opts);
  return result!;
}
