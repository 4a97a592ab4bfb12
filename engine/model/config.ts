// The model architecture config in Hugging Face LlamaConfig field names, so a config.json written here
// loads in transformers and a Llama / SmolLM2 / Qwen2 / Mistral config.json loads here.

export interface ModelConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  max_position_embeddings: number;
  /**
   * Biases on q_proj, k_proj and v_proj (the Qwen2 layout). o_proj never has one here: HF Llama's
   * attention_bias would also give o_proj a bias, so such llama configs are rejected and configs with
   * biases are written as qwen2 (see parseModelConfig).
   */
  attention_bias: boolean;
  /** hidden_size / num_attention_heads unless the JSON gives head_dim (e.g. 8 heads of 64 in a 384-wide model). */
  head_dim: number;
  /** Standard deviation of the normal initialisation of Linear and embedding weights. */
  initializer_range: number;
  /**
   * Llama 3.1-style scaling of the rotary frequencies (config.json `rope_scaling` or transformers v5
   * `rope_parameters` with rope_type "llama3"); absent for plain RoPE, so configs without it hash and
   * compare as before.
   */
  rope_scaling?: Llama3RopeScaling;
}

/** transformers' "llama3" RoPE type: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between. */
export interface Llama3RopeScaling {
  rope_type: 'llama3';
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  /** The context length of pretraining; wavelengths are compared against it divided by the two factors. */
  original_max_position_embeddings: number;
}

export class ModelConfigError extends Error {
  override readonly name = 'ModelConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid model config (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export const SUPPORTED_MODEL_TYPES = ['llama', 'qwen2', 'mistral'] as const;
type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const isPositiveNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const isNonNegativeNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
const isModelType = (v: unknown): v is ModelType => typeof v === 'string' && (SUPPORTED_MODEL_TYPES as readonly string[]).includes(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  // JSON.parse reads 1e999 as Infinity, which JSON.stringify would print as "null".
  if (typeof value === 'number' && !Number.isFinite(value)) return `${String(value)} (out of range)`;
  return JSON.stringify(value) ?? typeof value;
}

/** Collects every problem instead of stopping at the first, so one error message lists them all. */
class FieldReader {
  readonly problems: string[] = [];
  private readonly bad = new Set<string>();

  constructor(private readonly raw: Record<string, unknown>) {}

  /** Present with a value; HF treats a missing key and an explicit null alike only for some fields. */
  has(name: string): boolean {
    return this.raw[name] !== undefined;
  }

  value(name: string): unknown {
    return this.raw[name];
  }

  valid(...names: string[]): boolean {
    return names.every((n) => !this.bad.has(n));
  }

  problem(name: string, text: string): void {
    this.bad.add(name);
    this.problems.push(`${name}: ${text}`);
  }

  /**
   * The field's value if it passes `ok`, else `fallback` (after recording a problem when the field was
   * present, or when it is required). `nullIsAbsent` follows HF for fields whose None means "derive it".
   */
  read<T>(name: string, ok: (v: unknown) => v is T, expected: string, fallback: T, opts: { required?: boolean; nullIsAbsent?: boolean } = {}): T {
    const v = this.raw[name];
    if (v === undefined || (v === null && opts.nullIsAbsent === true)) {
      if (opts.required === true) this.problem(name, `required (${expected})`);
      return fallback;
    }
    if (!ok(v)) {
      this.problem(name, `must be ${expected}, got ${show(v)}`);
      return fallback;
    }
    return v;
  }
}

/**
 * Validates a parsed config.json and fills the HF LlamaConfig defaults; throws ModelConfigError naming
 * `source` and every bad field. Unknown fields are ignored: real HF configs carry many (token ids,
 * torch_dtype, transformers_version, …) that do not change the architecture.
 *
 * Per model_type, following the transformers modules so the same weights compute the same function:
 * - llama (also when model_type is absent): attention_bias defaults to false; true is rejected, since HF
 *   Llama then also biases o_proj, which this engine's parameter set does not have.
 * - qwen2: HF Qwen2 always has q/k/v biases (and none on o_proj) whatever the JSON says, and its configs
 *   carry no attention_bias field, so attention_bias defaults to true and an explicit false is rejected;
 *   use_sliding_window: true is rejected (only full causal attention is implemented).
 * - mistral: no attention biases; accepted only without a sliding window (sliding_window null or absent).
 * RoPE: plain RoPE, or Llama 3.1 scaling (rope_type "llama3", also under the older key `type`), given as
 * rope_scaling (transformers v4) or rope_parameters (v5, which also carries rope_theta); every other rope
 * type (linear, dynamic, yarn, longrope, ...) and a partial rotary factor are refused naming the field.
 */
export function parseModelConfig(json: unknown, source = 'model config'): ModelConfig {
  if (!isObject(json)) throw new ModelConfigError(source, [`(config): must be a JSON object, got ${show(json)}`]);
  const r = new FieldReader(json);

  let modelType: ModelType = 'llama';
  if (r.has('model_type')) {
    const t = r.value('model_type');
    if (isModelType(t)) modelType = t;
    else r.problem('model_type', `must be one of ${SUPPORTED_MODEL_TYPES.join(', ')} (Llama-family architectures), got ${show(t)}`);
  }

  const positiveInt = 'a positive integer';
  const vocab_size = r.read('vocab_size', isPositiveInt, positiveInt, 0, { required: true });
  const hidden_size = r.read('hidden_size', isPositiveInt, positiveInt, 0, { required: true });
  const intermediate_size = r.read('intermediate_size', isPositiveInt, positiveInt, 0, { required: true });
  const num_hidden_layers = r.read('num_hidden_layers', isPositiveInt, positiveInt, 0, { required: true });
  const num_attention_heads = r.read('num_attention_heads', isPositiveInt, positiveInt, 0, { required: true });
  const num_key_value_heads = r.read('num_key_value_heads', isPositiveInt, positiveInt, num_attention_heads, { nullIsAbsent: true });
  const rms_norm_eps = r.read('rms_norm_eps', isPositiveNumber, 'a positive number', 1e-6);
  const tie_word_embeddings = r.read('tie_word_embeddings', isBoolean, 'a boolean', false);
  const max_position_embeddings = r.read('max_position_embeddings', isPositiveInt, positiveInt, 2048);
  const initializer_range = r.read('initializer_range', isNonNegativeNumber, 'a non-negative number', 0.02);
  const { rope_theta, rope_scaling } = readRope(r, max_position_embeddings);
  const attention_bias = readAttentionBias(r, modelType);

  const headDimGiven = r.has('head_dim') && r.value('head_dim') !== null;
  let head_dim = r.read('head_dim', isPositiveInt, positiveInt, 0, { nullIsAbsent: true });
  if (!headDimGiven && r.valid('hidden_size', 'num_attention_heads')) {
    if (hidden_size % num_attention_heads !== 0) {
      r.problem('num_attention_heads', `must divide hidden_size (${hidden_size} is not a multiple of ${num_attention_heads}) unless head_dim is given`);
    } else {
      head_dim = hidden_size / num_attention_heads;
      if (head_dim % 2 !== 0) r.problem('head_dim', `hidden_size / num_attention_heads = ${head_dim} must be even (RoPE rotates pairs of dimensions)`);
    }
  } else if (headDimGiven && r.valid('head_dim') && head_dim % 2 !== 0) {
    r.problem('head_dim', `must be even (RoPE rotates pairs of dimensions), got ${head_dim}`);
  }
  if (r.valid('num_attention_heads', 'num_key_value_heads') && num_attention_heads % num_key_value_heads !== 0) {
    r.problem('num_key_value_heads', `num_attention_heads (${num_attention_heads}) must be a multiple of num_key_value_heads (${num_key_value_heads})`);
  }

  if (r.has('hidden_act') && r.value('hidden_act') !== 'silu') {
    r.problem('hidden_act', `only "silu" is supported, got ${show(r.value('hidden_act'))}`);
  }
  if (r.has('mlp_bias') && r.value('mlp_bias') !== false) {
    r.problem('mlp_bias', `only false is supported (the MLP projections have no bias), got ${show(r.value('mlp_bias'))}`);
  }
  if (modelType === 'mistral' && r.has('sliding_window') && r.value('sliding_window') !== null) {
    r.problem('sliding_window', `sliding-window attention is not supported: must be null or absent for mistral, got ${show(r.value('sliding_window'))}`);
  }
  if (modelType === 'qwen2' && r.has('use_sliding_window') && r.value('use_sliding_window') !== false) {
    r.problem('use_sliding_window', `sliding-window attention is not supported: must be false or absent, got ${show(r.value('use_sliding_window'))}`);
  }

  if (r.problems.length > 0) throw new ModelConfigError(source, r.problems);
  return {
    vocab_size,
    hidden_size,
    intermediate_size,
    num_hidden_layers,
    num_attention_heads,
    num_key_value_heads,
    rms_norm_eps,
    rope_theta,
    tie_word_embeddings,
    max_position_embeddings,
    attention_bias,
    head_dim,
    initializer_range,
    ...(rope_scaling ? { rope_scaling } : {}),
  };
}

function readAttentionBias(r: FieldReader, modelType: ModelType): boolean {
  const bias = r.read('attention_bias', isBoolean, 'a boolean', modelType === 'qwen2');
  if (!r.valid('attention_bias')) return bias;
  if (modelType === 'qwen2' && !bias) {
    r.problem('attention_bias', 'false is not supported for qwen2 (HF Qwen2 always has q/k/v biases)');
  } else if (modelType === 'llama' && bias) {
    r.problem('attention_bias', 'true is not supported for llama (HF Llama would also bias o_proj); a model with q/k/v biases only is model_type "qwen2"');
  } else if (modelType === 'mistral' && bias) {
    r.problem('attention_bias', 'true is not supported for mistral (HF Mistral has no attention biases)');
  }
  return bias;
}

interface RopeDescription {
  theta?: number;
  scaling?: Llama3RopeScaling;
}

const isPositiveNumberField = (params: Record<string, unknown>, key: string): boolean => isPositiveNumber(params[key]);

/**
 * One of rope_scaling / rope_parameters in a common form, or undefined after recording a problem. A missing
 * original_max_position_embeddings falls back as transformers v5's standardize_rope_params does: the
 * top-level field of that name, else max_position_embeddings.
 */
function readRopeDescription(r: FieldReader, field: string, params: Record<string, unknown>, maxPositions: number): RopeDescription | undefined {
  const problemsBefore = r.problems.length;
  if (params.rope_type !== undefined && params.type !== undefined && params.rope_type !== params.type) {
    r.problem(field, `rope_type ${show(params.rope_type)} and type ${show(params.type)} disagree`);
    return undefined;
  }
  const ropeType = params.rope_type ?? params.type ?? 'default';
  if (ropeType !== 'default' && ropeType !== 'llama3') {
    r.problem(field, `rope_type ${show(ropeType)} is not supported (only "default", plain RoPE, and "llama3")`);
    return undefined;
  }
  const out: RopeDescription = {};
  if (params.rope_theta !== undefined) {
    if (isPositiveNumber(params.rope_theta)) out.theta = params.rope_theta;
    else r.problem(field, `rope_theta must be a positive number, got ${show(params.rope_theta)}`);
  }
  if (params.partial_rotary_factor !== undefined && params.partial_rotary_factor !== null && params.partial_rotary_factor !== 1) {
    r.problem(field, `partial_rotary_factor ${show(params.partial_rotary_factor)} is not supported (rotary embeddings over the whole head only)`);
  }
  if (ropeType === 'llama3') {
    for (const key of ['factor', 'low_freq_factor', 'high_freq_factor']) {
      if (!isPositiveNumberField(params, key)) r.problem(field, `${key} must be a positive number for rope_type "llama3", got ${show(params[key])}`);
    }
    const low = params.low_freq_factor;
    const high = params.high_freq_factor;
    // The ramp between the two wavelengths divides by their difference.
    if (isPositiveNumber(low) && isPositiveNumber(high) && high <= low) {
      r.problem(field, `high_freq_factor (${high}) must be greater than low_freq_factor (${low})`);
    }
    let original = params.original_max_position_embeddings;
    const topLevel = r.value('original_max_position_embeddings');
    if (original === undefined || original === null) original = topLevel ?? maxPositions;
    else if (topLevel !== undefined && topLevel !== null && topLevel !== original) {
      r.problem(field, `original_max_position_embeddings ${show(original)} disagrees with the top-level original_max_position_embeddings ${show(topLevel)}`);
    }
    if (!isPositiveInt(original)) r.problem(field, `original_max_position_embeddings must be a positive integer, got ${show(original)}`);
    if (r.problems.length === problemsBefore) {
      out.scaling = {
        rope_type: 'llama3',
        factor: params.factor as number,
        low_freq_factor: low as number,
        high_freq_factor: high as number,
        original_max_position_embeddings: original as number,
      };
    }
  }
  return r.problems.length === problemsBefore ? out : undefined;
}

/**
 * rope_theta and the scaling from the top level and rope_scaling (transformers v4) or rope_parameters (v5).
 * Where several of them give the same quantity they must agree, so no source silently wins.
 */
function readRope(r: FieldReader, maxPositions: number): { rope_theta: number; rope_scaling?: Llama3RopeScaling } {
  const topLevel = r.read('rope_theta', isPositiveNumber, 'a positive number', 10000);
  const described: [string, RopeDescription][] = [];
  for (const field of ['rope_scaling', 'rope_parameters']) {
    const params = r.value(field);
    if (params === undefined || params === null) continue;
    if (!isObject(params)) {
      r.problem(field, `must be an object or null, got ${show(params)}`);
      continue;
    }
    const d = readRopeDescription(r, field, params, maxPositions);
    if (d) described.push([field, d]);
  }
  let theta = topLevel;
  let scaling: Llama3RopeScaling | undefined;
  for (const [field, d] of described) {
    if (d.theta !== undefined) {
      if (r.has('rope_theta') && r.valid('rope_theta') && topLevel !== d.theta) {
        r.problem(field, `rope_theta ${d.theta} disagrees with the top-level rope_theta ${topLevel}`);
      }
      theta = d.theta;
    }
  }
  if (described.length === 2 && JSON.stringify(described[0]![1].scaling ?? null) !== JSON.stringify(described[1]![1].scaling ?? null)) {
    r.problem('rope_parameters', `describes another RoPE scaling than rope_scaling (${show(described[1]![1].scaling ?? 'none')} vs ${show(described[0]![1].scaling ?? 'none')})`);
  } else {
    scaling = described[0]?.[1].scaling;
  }
  return scaling ? { rope_theta: theta, rope_scaling: scaling } : { rope_theta: theta };
}

/**
 * HF-style config.json content for `config`. A model with attention biases is written as Qwen2 (q/k/v
 * biases, none on o_proj), the HF architecture with exactly that parameter set; every other as Llama.
 * rope_theta stays at the top level, which transformers v4 and v5 both read.
 */
export function modelConfigToJson(config: ModelConfig): Record<string, unknown> {
  const qwen2 = config.attention_bias;
  const json: Record<string, unknown> = {
    architectures: [qwen2 ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: qwen2 ? 'qwen2' : 'llama',
    hidden_act: 'silu',
    torch_dtype: 'float32',
    vocab_size: config.vocab_size,
    hidden_size: config.hidden_size,
    intermediate_size: config.intermediate_size,
    num_hidden_layers: config.num_hidden_layers,
    num_attention_heads: config.num_attention_heads,
    num_key_value_heads: config.num_key_value_heads,
    head_dim: config.head_dim,
    rms_norm_eps: config.rms_norm_eps,
    rope_theta: config.rope_theta,
    rope_scaling: config.rope_scaling ? { ...config.rope_scaling } : null,
    tie_word_embeddings: config.tie_word_embeddings,
    max_position_embeddings: config.max_position_embeddings,
    attention_bias: config.attention_bias,
    initializer_range: config.initializer_range,
    ...(qwen2 ? { use_sliding_window: false } : { mlp_bias: false }),
  };
  // Never write a config that would not load back: a hand-built ModelConfig may be inconsistent.
  parseModelConfig(json, 'modelConfigToJson');
  return json;
}
