// Helpers shared by the engine's unit tests: engines released after the file's tests, and keyed random ids.
import { afterAll } from 'vitest';
import { uniform } from '../dro/random.js';
import type { PolicyEngine } from './policy.js';

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
