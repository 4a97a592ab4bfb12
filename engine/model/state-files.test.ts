// Loading weights refuses what would load silently wrong: integer tensors read as weights, NaN or
// infinite values, and tensors the model config does not use (fewer layers than the weights file).
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from './config.js';
import { initParameters } from './params.js';
import { decodeParameters, encodeParameters } from './state-files.js';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from '../weights/safetensors.js';

const config = parseModelConfig({ vocab_size: 16, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 2, tie_word_embeddings: true });
const file = (): Map<string, SafeTensor> => decodeSafetensors(encodeParameters(config, initParameters(config, 3))).tensors;

describe('decodeParameters', () => {
  it('loads what encodeParameters wrote', () => {
    const params = decodeParameters(encodeSafetensors(file()), config, 'float32', 'w.safetensors');
    expect(params.get('model.norm.weight')!.every((v) => v === 1)).toBe(true);
  });

  it('refuses an integer tensor as weights, naming the tensor and its dtype', () => {
    const t = file();
    const norm = t.get('model.norm.weight')!;
    t.set('model.norm.weight', { dtype: 'I32', shape: norm.shape, data: new Uint8Array(norm.data.byteLength) });
    expect(() => decodeParameters(encodeSafetensors(t), config, 'float32', 'w.safetensors')).toThrow(/^w\.safetensors: tensor model\.norm\.weight has dtype I32; weights must be a float type/);
  });

  it('refuses NaN and infinite weights, naming the tensor and the element', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const t = file();
      const norm = t.get('model.norm.weight')!;
      const values = new Float32Array(norm.data.slice().buffer);
      values[5] = bad;
      t.set('model.norm.weight', { ...norm, data: new Uint8Array(values.buffer) });
      expect(() => decodeParameters(encodeSafetensors(t), config, 'float32', 'w.safetensors')).toThrow(new RegExp(`^w\\.safetensors: tensor model\\.norm\\.weight holds ${bad} at element 5; weights must be finite`));
    }
  });

  it('accepts what a model directory accepts: rotary inv_freq buffers and an lm_head.weight copying tied embeddings', () => {
    const t = file();
    t.set('model.rotary_emb.inv_freq', { dtype: 'F32', shape: [2], data: new Uint8Array(8) });
    t.set('lm_head.weight', t.get('model.embed_tokens.weight')!);
    expect([...decodeParameters(encodeSafetensors(t), config, 'float32', 'w.safetensors').keys()]).not.toContain('lm_head.weight');
    t.set('lm_head.weight', { ...t.get('model.embed_tokens.weight')!, data: new Uint8Array(16 * 8 * 4) });
    expect(() => decodeParameters(encodeSafetensors(t), config, 'float32', 'w.safetensors')).toThrow(/^w\.safetensors: tensor lm_head\.weight differs from model\.embed_tokens\.weight at element 0/);
  });

  it('refuses weights with tensors the config does not use (a config with fewer layers)', () => {
    const fewer = { ...config, num_hidden_layers: 1 };
    expect(() => decodeParameters(encodeSafetensors(file()), fewer, 'float32', 'w.safetensors')).toThrow(/^w\.safetensors: 9 tensor\(s\) the model config does not use, e\.g\. model\.layers\.1\./);
  });
});
