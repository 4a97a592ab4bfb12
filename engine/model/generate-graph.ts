// Graphs for sampling with a key/value cache: `prefill` runs the (left-padded) prompts and returns the
// last position's logits and every layer's keys and values; `decode` takes one new token per row and the
// cache, which the caller keeps in fixed buffers and updates in place, and returns the next logits and
// the new token's keys and values. Left padding puts every row's newest token in the same slot, so one
// graph serves a batch of prompts of different lengths.
import { Graph, type DType, type Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import { declareModelInputs, declareParameters, transformerForward, type LayerCache } from './transformer.js';

export const GENERATE_IO = {
  lastLogits: 'last_logits',
  pastKey: (layer: number) => `past.${layer}.key`,
  pastValue: (layer: number) => `past.${layer}.value`,
  presentKey: (layer: number) => `present.${layer}.key`,
  presentValue: (layer: number) => `present.${layer}.value`,
} as const;

function lastLogitsOutput(g: Graph, logits: Tensor, vocab: number): void {
  g.output(g.reshape(g.slice(logits, 1, -1, Infinity), ['batch', vocab]), GENERATE_IO.lastLogits);
}

/**
 * Prompts [B, T] → logits of position T − 1 [B, vocab] and the cache. Also the slow path's full
 * recompute. With `weights`, the parameters are baked in (see declareParameters).
 */
export function buildPrefillGraph(config: ModelConfig, dtype: DType, withCache = true, weights?: ReadonlyMap<string, Float32Array | Float64Array>): Graph {
  const g = new Graph('prefill');
  const params = declareParameters(g, config, dtype, weights);
  const inputs = declareModelInputs(g, dtype);
  const { logits, present } = transformerForward(g, config, params, inputs, { lastPositionOnly: true });
  lastLogitsOutput(g, logits, config.vocab_size);
  if (withCache) outputCache(g, present);
  return g;
}

/**
 * One token per row [B, 1] against a cache the caller keeps in place ([B, kvHeads, 1, maxLength, d] per
 * layer, `key_mask` [B, maxLength] marking the written slots) → next logits and the new token's keys and
 * values [B, kvHeads, 1, 1, d], which the caller writes into the next slot. Nothing the size of the cache
 * is copied: the buffers go in as they are and only one position per row comes out.
 */
export function buildFixedCacheDecodeGraph(config: ModelConfig, dtype: DType, weights?: ReadonlyMap<string, Float32Array | Float64Array>): Graph {
  const g = new Graph('decode');
  const params = declareParameters(g, config, dtype, weights);
  const inputs = { ids: g.input('ids', 'int64', ['batch', 1]), positions: g.input('positions', 'int64', ['batch', 1]) };
  const shape = ['batch', config.num_key_value_heads, 1, 'max', config.head_dim];
  const cache = Array.from({ length: config.num_hidden_layers }, (_, layer) => ({
    key: g.input(GENERATE_IO.pastKey(layer), dtype, shape),
    value: g.input(GENERATE_IO.pastValue(layer), dtype, shape),
  }));
  const fixedCache = { cache, mask: g.input('key_mask', dtype, ['batch', 'max']) };
  const { logits, present } = transformerForward(g, config, params, inputs, { fixedCache });
  lastLogitsOutput(g, logits, config.vocab_size);
  outputCache(g, present);
  return g;
}

function outputCache(g: Graph, present: LayerCache[]): void {
  present.forEach((c, layer) => {
    g.output(c.key, GENERATE_IO.presentKey(layer));
    g.output(c.value, GENERATE_IO.presentValue(layer));
  });
}
