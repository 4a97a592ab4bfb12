// Graphs for sampling with a key/value cache: `prefill` runs the (left-padded) prompts and returns the
// last position's logits and every layer's keys and values; `decode` takes one new token per row plus
// that cache and returns the next logits and the grown cache. Left padding puts every row's newest token
// at the same (last) position, so one graph serves a batch of prompts of different lengths.
import { Graph, type DType, type Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import { declareModelInputs, declareParameters, transformerForward, type LayerCache } from './transformer.js';

export const GENERATE_IO = {
  lastLogits: 'last_logits',
  seqlensK: 'seqlens_k',
  totalSequenceLength: 'total_sequence_length',
  lastIndex: 'last_index',
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
  const { logits, present } = transformerForward(g, config, params, inputs, undefined, { lastPositionOnly: true });
  lastLogitsOutput(g, logits, config.vocab_size);
  if (withCache) outputCache(g, present);
  return g;
}

/** One token per row [B, 1] + cache [B, kvHeads, 1, P, d] per layer → next logits and the cache grown by one. */
export function buildDecodeGraph(config: ModelConfig, dtype: DType, weights?: ReadonlyMap<string, Float32Array | Float64Array>): Graph {
  const g = new Graph('decode');
  const params = declareParameters(g, config, dtype, weights);
  const inputs = {
    ids: g.input('ids', 'int64', ['batch', 1]),
    keyMask: g.input('key_mask', dtype, ['batch', 'past+1']),
    positions: g.input('positions', 'int64', ['batch', 1]),
  };
  const shape = ['batch', config.num_key_value_heads, 1, 'past', config.head_dim];
  const past: LayerCache[] = Array.from({ length: config.num_hidden_layers }, (_, layer) => ({
    key: g.input(GENERATE_IO.pastKey(layer), dtype, shape),
    value: g.input(GENERATE_IO.pastValue(layer), dtype, shape),
  }));
  const { logits, present } = transformerForward(g, config, params, inputs, past);
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

/**
 * Prefill and decode in one graph, for float32: the cache of every layer is one buffer per key and value,
 * [B, kvHeads, maxLength, d], fed as `past.*` and fetched into itself as `present.*`, which ONNX Runtime's
 * GroupQueryAttention updates in place (it writes the new positions only). Rows are right-aligned: the
 * prompt of row b fills positions 0..L_b−1 (`seqlens_k` = L_b − 1, padding after it is never read), each
 * decode step adds one token per row at its own position. `last_index` [B] picks each row's last token in
 * the flattened [B·T] positions (b·T + L_b − 1 in prefill, b in decode); the logits are computed there only.
 */
export function buildSharedCacheGraph(config: ModelConfig, weights?: ReadonlyMap<string, Float32Array | Float64Array>): Graph {
  const g = new Graph('generate');
  const dtype = 'float32';
  const params = declareParameters(g, config, dtype, weights);
  const inputs = { ids: g.input('ids', 'int64', ['batch', 'seq']), positions: g.input('positions', 'int64', ['batch', 'seq']) };
  const shape = ['batch', config.num_key_value_heads, 'max', config.head_dim];
  const cache = Array.from({ length: config.num_hidden_layers }, (_, layer) => ({
    key: g.input(GENERATE_IO.pastKey(layer), dtype, shape),
    value: g.input(GENERATE_IO.pastValue(layer), dtype, shape),
  }));
  const sharedCache = { cache, seqlensK: g.input(GENERATE_IO.seqlensK, 'int32', ['batch']), totalSequenceLength: g.input(GENERATE_IO.totalSequenceLength, 'int32', []) };
  const gatherPositions = g.input(GENERATE_IO.lastIndex, 'int64', ['batch']);
  const { logits, present } = transformerForward(g, config, params, inputs, undefined, { sharedCache, gatherPositions });
  lastLogitsOutput(g, logits, config.vocab_size);
  outputCache(g, present);
  return g;
}
