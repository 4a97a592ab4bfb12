// Messages between the main thread and the engine thread: calls by id, cancellation, progress, results.
import type { EngineApi } from '../api.js';
import type { WireError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import type { EngineOptions } from '../policy.js';

/** How the engine thread gets its model: initialised from a seed, or loaded from a model directory. */
export type EngineSource = { kind: 'init'; config: ModelConfig; seed: number } | { kind: 'path'; path: string };

export interface StartMessage {
  source: EngineSource;
  options: EngineOptions;
  /** Tests only (engine/testing/crashable-client.ts): the thread also accepts CrashMessage. */
  testing?: boolean;
}

export type EngineMethod = keyof EngineApi;

/**
 * An argument as it crosses to the thread: an options object leaves its AbortSignal and progress
 * callback with the caller (they cannot be cloned); the thread stands in its own.
 */
type OnWire<T> = T extends object ? ('signal' extends keyof T ? Omit<T, 'signal' | 'onProgress'> : T) : T;

/** A method's arguments as they cross to the thread. */
export type WireArgs<K extends EngineMethod> = { [I in keyof Parameters<EngineApi[K]>]: OnWire<Parameters<EngineApi[K]>[I]> };

/** A method's answer. */
export type EngineAnswer<K extends EngineMethod> = Awaited<ReturnType<EngineApi[K]>>;

export type CallMessage<K extends EngineMethod = EngineMethod> = { [M in K]: { type: 'call'; id: number; method: M; args: WireArgs<M> } }[K];

export type ToEngine = CallMessage | { type: 'cancel'; id: number };

/** Fault injection for tests, accepted only by a thread started with `testing`: it exits at once, as a crashed thread would. */
export interface CrashMessage {
  type: 'crash';
  code: number;
}

export type FromEngine =
  | { type: 'ready'; config: ModelConfig }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'progress'; id: number; value: number }
  | { type: 'fatal'; message: string };
