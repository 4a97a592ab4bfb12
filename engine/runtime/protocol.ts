// Messages between the main thread and the engine thread: calls by id, cancellation, progress, results.
import type { WireError } from '../errors.js';
import type { EngineOptions } from '../policy.js';
import type { ModelConfig } from '../model/config.js';

/** How the engine thread gets its model: initialised from a seed, or loaded from a model directory. */
export type EngineSource = { kind: 'init'; config: ModelConfig; seed: number } | { kind: 'path'; path: string };

export interface StartMessage {
  source: EngineSource;
  options: EngineOptions;
}

export type ToEngine =
  | { type: 'call'; id: number; method: string; args: unknown[] }
  | { type: 'cancel'; id: number }
  /** Fault injection for tests: the thread exits at its next chance, as a crashed thread would. */
  | { type: 'crash'; code: number };

export type FromEngine =
  | { type: 'ready'; config: ModelConfig }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'progress'; id: number; value: number }
  | { type: 'fatal'; message: string };
