// The engine's typed failures (with the policy tag a mismatch names) and their form on the wire, so a
// caller on either side of the engine thread decides by class (retry, re-pin, give up) and never by
// parsing a message.

/** Which policy version the engine holds: set by whoever loads or advances the state, checked by whoever relies on it. */
export interface PolicyTag {
  runId: string;
  configHash: string;
  step: number;
}

/** The request itself is wrong (ids outside the vocabulary, bad spans, too long, bad files): retrying cannot help. */
export class EngineInputError extends Error {
  override readonly name = 'EngineInputError';
}

/** An update produced a non-finite loss or gradient norm; nothing was committed. */
export class NonFiniteUpdateError extends Error {
  override readonly name = 'NonFiniteUpdateError';
  constructor(
    /** The optimizer step number the update would have had. */
    readonly update: number,
    readonly quantity: 'loss' | 'gradient norm',
    readonly value: number,
  ) {
    super(`update ${update}: ${quantity} is ${value}; the weights were left unchanged`);
  }
}

/** The engine does not hold the policy version the caller expects (the cue to re-pin and rewind). */
export class PolicyTagMismatchError extends Error {
  override readonly name = 'PolicyTagMismatchError';
  constructor(
    readonly expected: PolicyTag,
    readonly actual: PolicyTag | undefined,
  ) {
    super(`the engine holds ${describeTag(actual)}, the caller expects ${describeTag(expected)}`);
  }
}

/** The call was cancelled; whatever it would have changed is unchanged. */
export class EngineAbortError extends Error {
  override readonly name = 'EngineAbortError';
}

/** The engine thread could not start or died: the engine's state is gone, but another thread may succeed. */
export class EngineThreadError extends Error {
  override readonly name = 'EngineThreadError';
}

function describeTag(tag: PolicyTag | undefined): string {
  return tag ? `policy (run ${JSON.stringify(tag.runId)}, config ${tag.configHash}, step ${tag.step})` : 'an untagged policy';
}

/** The error an aborted signal stands for; it keeps the reason's message, so callers' own reasons stay readable. */
export function abortError(reason: unknown): EngineAbortError {
  if (reason instanceof EngineAbortError) return reason;
  return new EngineAbortError(reason instanceof Error ? reason.message : 'the call was cancelled', { cause: reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal.reason);
}

/**
 * An error as structured clone carries it. Cloning an Error keeps only built-in classes, so the class
 * travels by name and its fields alongside.
 */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  fields?: Record<string, unknown>;
}

export function errorToWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const wire: WireError = { name: err.name, message: err.message, stack: err.stack };
  if (err instanceof NonFiniteUpdateError) wire.fields = { update: err.update, quantity: err.quantity, value: err.value };
  if (err instanceof PolicyTagMismatchError) wire.fields = { expected: err.expected, actual: err.actual };
  return wire;
}

export function errorFromWire(wire: WireError): Error {
  const f = wire.fields ?? {};
  let err: Error;
  switch (wire.name) {
    case 'EngineInputError':
      err = new EngineInputError(wire.message);
      break;
    case 'NonFiniteUpdateError':
      err = new NonFiniteUpdateError(f.update as number, f.quantity as NonFiniteUpdateError['quantity'], f.value as number);
      break;
    case 'PolicyTagMismatchError':
      err = new PolicyTagMismatchError(f.expected as PolicyTag, f.actual as PolicyTag | undefined);
      break;
    case 'EngineAbortError':
      err = new EngineAbortError(wire.message);
      break;
    case 'EngineThreadError':
      err = new EngineThreadError(wire.message);
      break;
    default:
      err = new Error(wire.message);
      err.name = wire.name;
  }
  // The thread's stack says where the failure happened; this side's would only show the message handler.
  if (wire.stack) err.stack = wire.stack;
  return err;
}

/**
 * The model computed NaN though every weight is finite (loading refuses NaN/Inf weights): some weights
 * are so large that the forward pass overflows float32. The error names the largest ones, so the user
 * knows which tensors to look at; like a bad file, retrying cannot help.
 */
export function overflowError(problem: string, params: ReadonlyMap<string, ArrayLike<number>>, cause?: unknown): EngineInputError {
  const largest = [...params].map(([name, values]) => {
    let max = 0;
    for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
    return { name, max };
  });
  largest.sort((a, b) => b.max - a.max);
  const named = largest.slice(0, 3).map((t) => `${t.name} (max |w| ${t.max.toExponential(2)})`).join(', ');
  return new EngineInputError(`${problem}; every weight is finite, so some overflow float32 in the forward pass (the largest: ${named})`, { cause });
}
