// Turning token sequences and parameters into session feeds: vocabulary checks, padding with key masks
// and positions, parameter and scalar tensors in the engine's float type.
import type { ModelConfig } from './model/config.js';
import { parameterSpecs, type ParamSpec } from './model/params.js';
import { EngineInputError } from './errors.js';
import { zeros, type FloatArray, type FloatDType } from './float-arrays.js';
import type { TensorData } from './ort.js';

export function scalarFeed(dtype: FloatDType, x: number): TensorData {
  return { dtype, dims: [], data: dtype === 'float64' ? Float64Array.of(x) : Float32Array.of(x) };
}

/** Weight tensors a session takes as inputs, by name with their shapes: the parameters, and under LoRA the adapters too. */
export interface Weights {
  specs: readonly ParamSpec[];
  values: ReadonlyMap<string, FloatArray>;
}

/** Every weight as a feed under its name (the graphs declare them as inputs by those names). */
export function weightFeeds(dtype: FloatDType, weights: Weights): Record<string, TensorData> {
  const feeds: Record<string, TensorData> = {};
  for (const spec of weights.specs) feeds[spec.name] = { dtype, dims: spec.shape, data: weights.values.get(spec.name)! };
  return feeds;
}

/** Every parameter as a feed under its HF name. */
export function parameterFeeds(config: ModelConfig, dtype: FloatDType, params: ReadonlyMap<string, FloatArray>): Record<string, TensorData> {
  return weightFeeds(dtype, { specs: parameterSpecs(config), values: params });
}

/** Throws unless every id is inside the vocabulary, naming the first bad one. */
export function checkIds(config: ModelConfig, rows: readonly (readonly number[])[]): void {
  rows.forEach((row, b) =>
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= config.vocab_size) {
        throw new EngineInputError(`token id ${id} at sequence ${b}, position ${t} is outside the vocabulary (0..${config.vocab_size - 1})`);
      }
    }),
  );
}

/**
 * Pads a batch to its longest row and returns the ids, key-mask and position feeds. Right padding
 * keeps every row's tokens at their natural indices (scoring, training); left padding puts every
 * row's newest token last (generation). Pads are masked and get position 0.
 */
export function paddedFeeds(config: ModelConfig, dtype: FloatDType, rows: readonly (readonly number[])[], side: 'left' | 'right'): { feeds: Record<string, TensorData>; length: number } {
  if (rows.length === 0) throw new EngineInputError('empty batch');
  checkIds(config, rows);
  const length = Math.max(...rows.map((s) => s.length));
  if (length > config.max_position_embeddings) throw new EngineInputError(`sequence of ${length} tokens exceeds max_position_embeddings ${config.max_position_embeddings}`);
  const B = rows.length;
  const ids = new BigInt64Array(B * length);
  const positions = new BigInt64Array(B * length);
  const mask = zeros(dtype, B * length);
  rows.forEach((row, b) => {
    const offset = b * length + (side === 'left' ? length - row.length : 0);
    row.forEach((id, t) => {
      ids[offset + t] = BigInt(id);
      positions[offset + t] = BigInt(t);
      mask[offset + t] = 1;
    });
  });
  return {
    length,
    feeds: {
      ids: { dtype: 'int64', dims: [B, length], data: ids },
      key_mask: { dtype, dims: [B, length], data: mask },
      positions: { dtype: 'int64', dims: [B, length], data: positions },
    },
  };
}
