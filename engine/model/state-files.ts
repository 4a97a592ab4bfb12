// The engine state as files: parameters as safetensors with Hugging Face names (so they load in other
// tools), LoRA adapters under PEFT's names, AdamW moments of whatever is trained as `optimizer.adam_m.*` /
// `optimizer.adam_v.*` plus `optimizer.step`. Decoding checks every tensor and returns fresh arrays, so a
// caller can validate a whole state before using any.
import { zeros, type FloatArray, type FloatDType } from '../float-arrays.js';
import { EngineInputError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { adapterSpecs, type LoraConfig } from './lora.js';
import { assertModelFits, elementCount, parameterSpecs, type ParamSpec } from './params.js';
import { checkFiniteTensor, checkTensorEntry, checkTiedHead, EMBEDDINGS, planParameterTensors, TIED_HEAD } from './weight-check.js';
import { decodeSafetensors, encodeSafetensors, SafetensorsError, tensorFrom, toFloat32, toFloat64, type SafeTensor, type SafetensorsFile } from '../weights/safetensors.js';

export const OPTIMIZER_STEP_TENSOR = 'optimizer.step';
const M_PREFIX = 'optimizer.adam_m.';
const V_PREFIX = 'optimizer.adam_v.';

export interface OptimizerTensors {
  m: Map<string, FloatArray>;
  v: Map<string, FloatArray>;
  step: number;
}

function encodeTensors(specs: readonly ParamSpec[], values: ReadonlyMap<string, FloatArray>): Uint8Array {
  const tensors = new Map<string, SafeTensor>();
  for (const spec of specs) tensors.set(spec.name, tensorFrom(values.get(spec.name)!, spec.shape));
  return encodeSafetensors(tensors, { format: 'pt' });
}

export function encodeParameters(config: ModelConfig, params: ReadonlyMap<string, FloatArray>): Uint8Array {
  return encodeTensors(parameterSpecs(config), params);
}

/** adapter_model.safetensors: lora_A / lora_B under PEFT's names, loadable by PeftModel.from_pretrained. */
export function encodeAdapters(config: ModelConfig, lora: LoraConfig, adapters: ReadonlyMap<string, FloatArray>): Uint8Array {
  return encodeTensors(adapterSpecs(config, lora), adapters);
}

/**
 * Moments of the trained tensors `specs` (every parameter, or the adapters). Missing moments (an engine
 * that never trained) are written as the zeros they stand for.
 */
export function encodeOptimizer(specs: readonly ParamSpec[], dtype: FloatDType, state: { m: ReadonlyMap<string, FloatArray>; v: ReadonlyMap<string, FloatArray>; step: number }): Uint8Array {
  const tensors = new Map<string, SafeTensor>();
  for (const spec of specs) {
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
  checkTensorEntry(name, t, shape, source);
  let values: FloatArray;
  try {
    values = dtype === 'float64' ? toFloat64(t) : toFloat32(t);
  } catch (err) {
    if (err instanceof SafetensorsError) throw new EngineInputError(`${source}: tensor ${name}: ${err.message}`, { cause: err });
    throw err;
  }
  checkFiniteTensor(values, name, source);
  return values;
}

export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: 'float32', source: string): Map<string, Float32Array>;
export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: FloatDType, source: string): Map<string, FloatArray>;
export function decodeParameters(bytes: Uint8Array, config: ModelConfig, dtype: FloatDType, source: string): Map<string, FloatArray> {
  assertModelFits(config, source);
  const file = decode(bytes, source);
  // The same acceptance as a model directory's (weight-check.ts): one rule for every weights file.
  const plan = planParameterTensors(file.tensors, config, source);
  const params = new Map(plan.specs.map((spec) => [spec.name, readTensor(file, spec.name, spec.shape, dtype, source)]));
  if (plan.tiedHead) checkTiedHead(readTensor(file, TIED_HEAD, file.tensors.get(TIED_HEAD)!.shape, dtype, source), params.get(EMBEDDINGS)!, source);
  return params;
}

/** The adapters of an adapter_model.safetensors; every tensor must be there with its shape, and no other. */
export function decodeAdapters(bytes: Uint8Array, config: ModelConfig, lora: LoraConfig, dtype: FloatDType, source: string): Map<string, FloatArray> {
  const file = decode(bytes, source);
  const specs = adapterSpecs(config, lora);
  const used = new Set(specs.map((s) => s.name));
  const extra = [...file.tensors.keys()].filter((n) => !used.has(n)).sort();
  if (extra.length > 0) {
    throw new EngineInputError(`${source}: ${extra.length} tensor(s) the adapter config (r ${lora.rank}, target modules ${lora.targets.join(', ')}) does not have, e.g. ${extra.slice(0, 3).join(', ')}`);
  }
  return new Map(specs.map((spec) => [spec.name, readTensor(file, spec.name, spec.shape, dtype, source)]));
}

export function decodeOptimizer(bytes: Uint8Array, specs: readonly ParamSpec[], dtype: FloatDType, source: string): OptimizerTensors {
  const file = decode(bytes, source);
  const m = new Map<string, FloatArray>();
  const v = new Map<string, FloatArray>();
  for (const spec of specs) {
    m.set(spec.name, readTensor(file, M_PREFIX + spec.name, spec.shape, dtype, source));
    v.set(spec.name, readTensor(file, V_PREFIX + spec.name, spec.shape, dtype, source));
  }
  const t = file.tensors.get(OPTIMIZER_STEP_TENSOR);
  if (!t || t.dtype !== 'I64' || t.data.length !== 8) throw new EngineInputError(`${source}: ${OPTIMIZER_STEP_TENSOR} (I64 scalar) is missing`);
  const step = new DataView(t.data.buffer, t.data.byteOffset, 8).getBigInt64(0, true);
  if (step < 0n || step > BigInt(Number.MAX_SAFE_INTEGER)) throw new EngineInputError(`${source}: ${OPTIMIZER_STEP_TENSOR} is ${step}, not a step count`);
  return { m, v, step: Number(step) };
}
