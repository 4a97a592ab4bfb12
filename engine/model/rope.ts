// The rotary embedding's inverse frequencies, plain or with Llama 3.1 scaling: the one place every graph
// (scoring, generation, training) takes them from, so they all rotate alike.
import type { ModelConfig } from './config.js';

/**
 * inv_freq[i] = rope_theta^(−2i / head_dim) for i < head_dim / 2, then, with rope_type "llama3", the
 * frequency-dependent scaling of transformers' _compute_llama3_parameters: a dimension whose wavelength
 * 2π / inv_freq is longer than original_max_position_embeddings / low_freq_factor is slowed by `factor`,
 * one shorter than original_max_position_embeddings / high_freq_factor is kept, and the ones between are
 * blended linearly in original / wavelength. Computed in float64 and rounded once to the graph's dtype
 * (transformers computes in float32, so its values can differ in the last float32 bit).
 */
export function rotaryInverseFrequencies(config: ModelConfig): number[] {
  const half = config.head_dim / 2;
  const plain = Array.from({ length: half }, (_, i) => Math.pow(config.rope_theta, (-2 * i) / config.head_dim));
  const s = config.rope_scaling;
  if (!s) return plain;
  const lowFreqWavelength = s.original_max_position_embeddings / s.low_freq_factor;
  const highFreqWavelength = s.original_max_position_embeddings / s.high_freq_factor;
  return plain.map((f) => {
    const wavelength = (2 * Math.PI) / f;
    if (wavelength < highFreqWavelength) return f;
    if (wavelength > lowFreqWavelength) return f / s.factor;
    // The boundaries themselves fall here, as in transformers (its tests are strict < and >).
    const smooth = (s.original_max_position_embeddings / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
