// The engine state as files: parameters as safetensors with Hugging Face names (so they load in other
// tools), AdamW moments as `optimizer.adam_m.*` / `optimizer.adam_v.*` plus `optimizer.step`. Decoding
// checks every tensor and returns fresh arrays, so a caller can validate a whole state before using any.
import { zeros, type FloatArray, type FloatDType } from './batching.js';
import { EngineInputError } from './errors.js';
import type { ModelConfig } from './model/config.js';
import { elementCount, parameterSpecs } from './model/params.js';
import { decodeSafetensors, encodeSafetensors, SafetensorsError, tensorFrom, toFloat32, toFloat64, type SafeTensor, type SafetensorsFile } from './weights/safetensors.js';

export const OPTIMIZER_STEP_TENSOR = 'optimizer.step';
const M_PREFIX = 'optimizer.adam_m.';
const V_PREFIX = 'optimizer.adam_v.';

export interface OptimizerTensors {
  m: Map<string, FloatArray>;
  v: Map<string, FloatArray>;
  step: number;
}

export function encodeParameters(config: ModelConfig, params: ReadonlyMap<string, FloatArray>): Uint8Array {
  const tensors = new Map<string, SafeTensor>();
  for (const spec of parameterSpecs(config)) tensors.set(spec.name, tensorFrom(params.get(spec.name)!, spec.shape));
  return encodeSafetensors(tensors, { format: 'pt' });
}

/** Missing moments (an engine that never trained) are written as the zeros they stand for. */
export function encodeOptimizer(config: ModelConfig, dtype: FloatDType, state: { m: ReadonlyMap<string, FloatArray>; v: ReadonlyMap<string, FloatArray>; step: number }): Uint8Array {
  const tensors = new Map<string, SafeTensor>();
  for (const spec of parameterSpecs(config)) {
    const size = elementCount(spec.shape);
    tensors.set(M_PREFIX + spec.name, tensorFrom(state.m.get(spec.name) ?? zeros(dtype, size), spec.shape));
    tensors.set(V_PREFIX + spec.name, tensorFrom(state.v.get(spec.name) ?? zeros(dtype, size), spec.shape));
  }
  tensors.set(OPTIMIZER_STEP_TENSOR, tensorFrom(BigInt64Array.of(BigInt(state.step)), []));
  return encodeSafetensors(tensors, { optimizer: 'adamw' });
}

function decode(bytes: Uint8Array, source: string): SafetensorsFile {
  try {
    return decodeSafetensors(bytes, source);
  } catch (err) {
    // A corrupt file is a bad input to the engine, the same as a missing tensor.
    if (err instanceof SafetensorsError) throw new EngineInputError(err.message, { cause: err });
    throw err;
  }
}

function readTensor(file: SafetensorsFile, name: string, shape: readonly number[], dtype: FloatDType, source: string): FloatArray {
  const t = file.tensors.get(name);
  if (!t) throw new EngineInputError(`${source}: tensor ${name} is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new EngineInputError(`${source}: tensor ${name} has shape [${t.shape.join(', ')}], the model needs [${shape.join(', ')}]`);
  }
  try {
    return dtype === 'float64' ? toFloat64(t) : toFloat32(t);
  } catch (err) {
    if (err instanceof SafetensorsError) throw new EngineInputError(`${source}: tensor ${name}: ${err.message}`, { cause: err });
    throw err;
  }
}

export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: 'float32', source: string): Map<string, Float32Array>;
export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: FloatDType, source: string): Map<string, FloatArray>;
export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: FloatDType, source: string): Map<string, FloatArray> {
  const file = decode(bytes, source);
  return new Map(parameterSpecs(config).map((spec) => [spec.name, readTensor(file, spec.name, spec.shape, dtype, source)]));
}

export function decodeOptimizer(bytes: Uint8Array, config: ModelConfig, dtype: FloatDType, source: string): OptimizerTensors {
  const file = decode(bytes, source);
  const m = new Map<string, FloatArray>();
  const v = new Map<string, FloatArray>();
  for (const spec of parameterSpecs(config)) {
    m.set(spec.name, readTensor(file, M_PREFIX + spec.name, spec.shape, dtype, source));
    v.set(spec.name, readTensor(file, V_PREFIX + spec.name, spec.shape, dtype, source));
  }
  const t = file.tensors.get(OPTIMIZER_STEP_TENSOR);
  if (!t || t.dtype !== 'I64' || t.data.length !== 8) throw new EngineInputError(`${source}: ${OPTIMIZER_STEP_TENSOR} (I64 scalar) is missing`);
  const step = new DataView(t.data.buffer, t.data.byteOffset, 8).getBigInt64(0, true);
  if (step < 0n || step > BigInt(Number.MAX_SAFE_INTEGER)) throw new EngineInputError(`${source}: ${OPTIMIZER_STEP_TENSOR} is ${step}, not a step count`);
  return { m, v, step: Number(step) };
}
