// The model config: HF defaults, derived head_dim, per-model-type rules, every error naming source and
// field, the config.json round trip, and a real SmolLM2-135M config with its known parameter count.
import { describe, expect, it } from 'vitest';
import { modelConfigToJson, ModelConfigError, parseModelConfig } from './config.js';
import type { ModelConfig } from './config.js';
import { parameterCount } from './params.js';

const minimal = { vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4 };

function problems(json: unknown, source = 'cfg.json'): string[] {
  try {
    parseModelConfig(json, source);
  } catch (err) {
    expect(err).toBeInstanceOf(ModelConfigError);
    const e = err as ModelConfigError;
    expect(e.source).toBe(source);
    expect(e.message).toContain(source);
    for (const p of e.problems) expect(e.message).toContain(p);
    return e.problems;
  }
  throw new Error('expected the config to be rejected');
}

describe('parseModelConfig defaults', () => {
  it('fills the HF LlamaConfig defaults and derives head_dim', () => {
    expect(parseModelConfig(minimal)).toEqual({
      ...minimal,
      num_key_value_heads: 4,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: false,
      max_position_embeddings: 2048,
      attention_bias: false,
      head_dim: 16,
      initializer_range: 0.02,
    } satisfies ModelConfig);
  });

  it('takes head_dim from the JSON when given, even when the heads do not divide hidden_size', () => {
    expect(parseModelConfig({ ...minimal, head_dim: 32 }).head_dim).toBe(32);
    expect(parseModelConfig({ ...minimal, hidden_size: 100, num_attention_heads: 3, head_dim: 32 }).head_dim).toBe(32);
    // HF's None means "derive it", for head_dim and num_key_value_heads alike.
    expect(parseModelConfig({ ...minimal, head_dim: null, num_key_value_heads: null })).toMatchObject({ head_dim: 16, num_key_value_heads: 4 });
  });

  it('qwen2: q/k/v biases by default (its configs have no attention_bias field); llama and mistral: none', () => {
    expect(parseModelConfig({ ...minimal, model_type: 'qwen2' }).attention_bias).toBe(true);
    expect(parseModelConfig({ ...minimal, model_type: 'qwen2', attention_bias: true, use_sliding_window: false, sliding_window: 4096 }).attention_bias).toBe(true);
    expect(parseModelConfig({ ...minimal, model_type: 'llama' }).attention_bias).toBe(false);
    expect(parseModelConfig({ ...minimal, model_type: 'mistral', sliding_window: null }).attention_bias).toBe(false);
    expect(parseModelConfig({ ...minimal, model_type: 'mistral' }).attention_bias).toBe(false);
  });

  it('ignores unknown fields, as real HF configs carry many', () => {
    const c = parseModelConfig({ ...minimal, bos_token_id: 1, eos_token_id: [2, 3], architectures: ['X'], torch_dtype: 'bfloat16', use_cache: true, rope_interleaved: false });
    expect(c).toEqual(parseModelConfig(minimal));
  });

  it('reads rope_theta from transformers v5 rope_parameters', () => {
    expect(parseModelConfig({ ...minimal, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }).rope_theta).toBe(500000);
    expect(parseModelConfig({ ...minimal, rope_theta: 7, rope_parameters: { rope_type: 'default', rope_theta: 7 } }).rope_theta).toBe(7);
    expect(parseModelConfig({ ...minimal, rope_theta: 7, rope_parameters: { rope_type: 'default' } }).rope_theta).toBe(7);
    expect(parseModelConfig({ ...minimal, rope_parameters: null }).rope_theta).toBe(10000);
  });
});

describe('parseModelConfig errors', () => {
  it('rejects a non-object', () => {
    expect(problems([1], 'a.json')).toEqual(['(config): must be a JSON object, got [1]']);
    expect(problems(null)).toEqual(['(config): must be a JSON object, got null']);
    expect(() => parseModelConfig('x')).toThrow('invalid model config (model config)');
  });

  it('names every bad field at once, with the source', () => {
    expect(problems(JSON.parse('{"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "rms_norm_eps": 1e999}'))).toEqual(['rms_norm_eps: must be a positive number, got Infinity (out of range)']);
    const found = problems({ hidden_size: -1, intermediate_size: 1.5, num_hidden_layers: '2', num_attention_heads: 0, rms_norm_eps: 0, rope_theta: -1, tie_word_embeddings: 'yes', max_position_embeddings: 0, attention_bias: 1, initializer_range: -0.1, head_dim: 0, num_key_value_heads: 2.5 });
    expect(found).toEqual([
      'vocab_size: required (a positive integer)',
      'hidden_size: must be a positive integer, got -1',
      'intermediate_size: must be a positive integer, got 1.5',
      'num_hidden_layers: must be a positive integer, got "2"',
      'num_attention_heads: must be a positive integer, got 0',
      'num_key_value_heads: must be a positive integer, got 2.5',
      'rms_norm_eps: must be a positive number, got 0',
      'tie_word_embeddings: must be a boolean, got "yes"',
      'max_position_embeddings: must be a positive integer, got 0',
      'initializer_range: must be a non-negative number, got -0.1',
      'rope_theta: must be a positive number, got -1',
      'attention_bias: must be a boolean, got 1',
      'head_dim: must be a positive integer, got 0',
    ]);
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ['heads not dividing hidden_size', { num_attention_heads: 5 }, 'num_attention_heads: must divide hidden_size (64 is not a multiple of 5) unless head_dim is given'],
    ['heads not a multiple of kv heads', { num_key_value_heads: 3 }, 'num_key_value_heads: num_attention_heads (4) must be a multiple of num_key_value_heads (3)'],
    ['more kv heads than heads', { num_key_value_heads: 8 }, 'num_key_value_heads: num_attention_heads (4) must be a multiple of num_key_value_heads (8)'],
    ['odd derived head_dim', { hidden_size: 60, num_attention_heads: 4 }, 'head_dim: hidden_size / num_attention_heads = 15 must be even (RoPE rotates pairs of dimensions)'],
    ['odd given head_dim', { head_dim: 7 }, 'head_dim: must be even (RoPE rotates pairs of dimensions), got 7'],
    ['another activation', { hidden_act: 'gelu' }, 'hidden_act: only "silu" is supported, got "gelu"'],
    ['linear RoPE scaling', { rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling: rope_type "linear" is not supported (only "default", plain RoPE, and "llama3")'],
    ['another architecture', { model_type: 'gpt2' }, 'model_type: must be one of llama, qwen2, mistral (Llama-family architectures), got "gpt2"'],
    ['mistral with a sliding window', { model_type: 'mistral', sliding_window: 4096 }, 'sliding_window: sliding-window attention is not supported: must be null or absent for mistral, got 4096'],
    ['qwen2 with a sliding window', { model_type: 'qwen2', use_sliding_window: true }, 'use_sliding_window: sliding-window attention is not supported: must be false or absent, got true'],
    ['qwen2 without biases', { model_type: 'qwen2', attention_bias: false }, 'attention_bias: false is not supported for qwen2 (HF Qwen2 always has q/k/v biases)'],
    ['llama with biases', { attention_bias: true }, 'attention_bias: true is not supported for llama (HF Llama would also bias o_proj); a model with q/k/v biases only is model_type "qwen2"'],
    ['mistral with biases', { model_type: 'mistral', attention_bias: true }, 'attention_bias: true is not supported for mistral (HF Mistral has no attention biases)'],
    ['MLP biases', { mlp_bias: true }, 'mlp_bias: only false is supported (the MLP projections have no bias), got true'],
    ['scaled rope_parameters', { rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } }, 'rope_parameters: rope_type "yarn" is not supported (only "default", plain RoPE, and "llama3")'],
    ['rope_parameters not an object', { rope_parameters: 3 }, 'rope_parameters: must be an object or null, got 3'],
    ['bad rope_parameters theta', { rope_parameters: { rope_theta: 'big' } }, 'rope_parameters: rope_theta must be a positive number, got "big"'],
    ['disagreeing thetas', { rope_theta: 10000, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, 'rope_parameters: rope_theta 500000 disagrees with the top-level rope_theta 10000'],
    ['null for a defaulted field', { rms_norm_eps: null }, 'rms_norm_eps: must be a positive number, got null'],
  ];
  for (const [what, fields, message] of cases) {
    it(`rejects ${what}`, () => {
      expect(problems({ ...minimal, ...fields }, 'models/x/config.json')).toEqual([message]);
    });
  }
});

describe('modelConfigToJson', () => {
  it('writes an HF Llama config.json', () => {
    const c = parseModelConfig(minimal);
    expect(modelConfigToJson(c)).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_act: 'silu',
      torch_dtype: 'float32',
      head_dim: 16,
      rope_scaling: null,
      attention_bias: false,
      mlp_bias: false,
      num_key_value_heads: 4,
    });
  });

  it('writes a model with q/k/v biases as Qwen2, whose HF modules have exactly those biases', () => {
    const c = parseModelConfig({ ...minimal, model_type: 'qwen2' });
    expect(modelConfigToJson(c)).toMatchObject({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', attention_bias: true, use_sliding_window: false });
  });

  it('round-trips: parse(modelConfigToJson(c)) = c', () => {
    const configs: ModelConfig[] = [
      parseModelConfig(minimal),
      parseModelConfig({ ...minimal, model_type: 'qwen2', tie_word_embeddings: true, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 1e6 }),
      parseModelConfig({ ...minimal, hidden_size: 100, num_attention_heads: 3, num_key_value_heads: 1, head_dim: 32, initializer_range: 0, max_position_embeddings: 77 }),
    ];
    for (const c of configs) expect(parseModelConfig(JSON.parse(JSON.stringify(modelConfigToJson(c))))).toEqual(c);
  });

  it('refuses to write an inconsistent config', () => {
    const bad: ModelConfig = { ...parseModelConfig(minimal), head_dim: 15 };
    expect(() => modelConfigToJson(bad)).toThrow(/modelConfigToJson[\s\S]*head_dim: must be even/);
  });
});

describe('SmolLM2-135M', () => {
  // HuggingFaceTB/SmolLM2-135M config.json, as published (extra HF / nanotron fields included).
  const smolLM2 = {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 0,
    eos_token_id: 0,
    hidden_act: 'silu',
    hidden_size: 576,
    initializer_range: 0.041666666666666664,
    intermediate_size: 1536,
    is_llama_config: true,
    max_position_embeddings: 8192,
    model_type: 'llama',
    num_attention_heads: 9,
    num_hidden_layers: 30,
    num_key_value_heads: 3,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_interleaved: false,
    rope_scaling: null,
    rope_theta: 100000,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    transformers_version: '4.42.3',
    use_cache: true,
    vocab_size: 49152,
  };

  it('parses, and has the known 134,515,008 parameters', () => {
    const c = parseModelConfig(smolLM2, 'SmolLM2-135M/config.json');
    expect(c).toEqual({
      vocab_size: 49152,
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      rms_norm_eps: 1e-5,
      rope_theta: 100000,
      tie_word_embeddings: true,
      max_position_embeddings: 8192,
      attention_bias: false,
      head_dim: 64,
      initializer_range: 0.041666666666666664,
    } satisfies ModelConfig);
    // embed 49152·576 = 28,311,552 (tied: no lm_head)
    // per layer: q 576·576 = 331,776; k, v 192·576 = 110,592 each; o 331,776;
    //   gate, up, down 1536·576 = 884,736 each; two norms 2·576 = 1,152
    //   → 331,776 + 2·110,592 + 331,776 + 3·884,736 + 1,152 = 3,540,096
    // 30 layers = 106,202,880; + final norm 576 + embed 28,311,552 = 134,515,008
    expect(parameterCount(c)).toBe(134_515_008);
  });
});
