// A Llama-family model from a GGUF file: the Hugging Face config from its llama.* (or qwen2.*) metadata,
// and every tensor under its Hugging Face name and shape, dequantised to float32, with the q/k row
// permutation that llama.cpp's converter applies to llama models undone, so rotary embeddings follow
// the Hugging Face "rotate half" convention this engine uses.
import { GgufError, type GgufHeader, type GgufReader, type GgufValue } from '../weights/gguf.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { parameterSpecs } from './params.js';

const ARCHITECTURES = ['llama', 'qwen2'] as const;

/** GGUF tensor name → Hugging Face name, per layer (blk.N.x → model.layers.N.y) and globally. */
const LAYER_TENSORS: Readonly<Record<string, string>> = Object.freeze({
  'attn_norm.weight': 'input_layernorm.weight',
  'attn_q.weight': 'self_attn.q_proj.weight',
  'attn_k.weight': 'self_attn.k_proj.weight',
  'attn_v.weight': 'self_attn.v_proj.weight',
  'attn_q.bias': 'self_attn.q_proj.bias',
  'attn_k.bias': 'self_attn.k_proj.bias',
  'attn_v.bias': 'self_attn.v_proj.bias',
  'attn_output.weight': 'self_attn.o_proj.weight',
  'ffn_norm.weight': 'post_attention_layernorm.weight',
  'ffn_gate.weight': 'mlp.gate_proj.weight',
  'ffn_up.weight': 'mlp.up_proj.weight',
  'ffn_down.weight': 'mlp.down_proj.weight',
});
const GLOBAL_TENSORS: Readonly<Record<string, string>> = Object.freeze({
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
});

/** The Hugging Face name of a GGUF tensor, or undefined for one a Llama model does not have. */
export function huggingFaceName(ggufName: string): string | undefined {
  const layer = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  if (layer) {
    const rest = LAYER_TENSORS[layer[2]!];
    return rest && `model.layers.${Number(layer[1])}.${rest}`;
  }
  return GLOBAL_TENSORS[ggufName];
}

/** The shortest decimal that is the same float32: GGUF stores eps and theta as float32 (1e-5, not 9.99999974e-6). */
function float32Decimal(x: number): number {
  for (let digits = 1; digits <= 9; digits++) {
    const y = Number(x.toPrecision(digits));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

/** The Hugging Face config.json content described by a GGUF header's metadata. */
export function ggufConfigJson(header: GgufHeader, source: string): Record<string, unknown> {
  const meta = header.metadata;
  const arch = meta.get('general.architecture');
  if (typeof arch !== 'string' || !(ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new GgufError(`${source}: general.architecture is ${JSON.stringify(arch ?? null)}; this importer reads ${ARCHITECTURES.join(', ')} (Llama-family) models`);
  }
  const key = (k: string): string => `${arch}.${k}`;
  const num = (k: string, fallback?: number): number => {
    const v: GgufValue | undefined = meta.get(key(k));
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new GgufError(`${source}: metadata ${key(k)} is ${v === undefined ? 'missing' : JSON.stringify(String(v))}; it must be a number`);
    return v;
  };
  // Fields this engine does not implement are refused by name rather than ignored.
  for (const k of ['rope.scaling.type', 'attention.sliding_window']) {
    const v = meta.get(key(k));
    if (v !== undefined && v !== 'none' && v !== 0) throw new GgufError(`${source}: metadata ${key(k)} is ${JSON.stringify(String(v))}; only plain RoPE and full attention are implemented`);
  }
  const heads = num('attention.head_count');
  const hidden = num('embedding_length');
  const tokens = meta.get('tokenizer.ggml.tokens');
  const vocab = meta.has(key('vocab_size')) ? num('vocab_size') : Array.isArray(tokens) ? tokens.length : num('vocab_size');
  const headDim = meta.has(key('attention.key_length')) ? num('attention.key_length') : hidden / heads;
  const ropeDims = num('rope.dimension_count', headDim);
  if (ropeDims !== headDim) throw new GgufError(`${source}: metadata ${key('rope.dimension_count')} is ${ropeDims}, but heads are ${headDim} wide; only rotary embeddings over the whole head are implemented`);
  const hasOutput = header.tensors.some((t) => t.name === 'output.weight');
  return {
    architectures: [arch === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: arch,
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: num('feed_forward_length'),
    num_hidden_layers: num('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: num('attention.head_count_kv', heads),
    head_dim: headDim,
    rms_norm_eps: float32Decimal(num('attention.layer_norm_rms_epsilon')),
    rope_theta: float32Decimal(num('rope.freq_base', 10000)),
    max_position_embeddings: num('context_length'),
    tie_word_embeddings: !hasOutput,
  };
}

/**
 * Undoes llama.cpp's q/k permutation of a [rows, cols] projection with `heads` heads: its converter
 * reorders each head's rows from (half, pair) to (pair, half) — row 2i + j of a head in the GGUF is row
 * j·half + i in Hugging Face's layout — so its rotary embedding can rotate adjacent pairs.
 */
export function unpermuteRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const perHead = rows / heads;
  const half = perHead / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * perHead + 2 * i + j) * cols;
        out.set(data.subarray(from, from + cols), (h * perHead + j * half + i) * cols);
      }
    }
  }
  return out;
}

export interface ImportedModel {
  config: ModelConfig;
  /** config.json content (what `config` was parsed from). */
  configJson: Record<string, unknown>;
  params: Map<string, Float32Array>;
}

/** Reads and converts every tensor; fails naming the first tensor that is missing, extra, misshaped or of an unsupported type. */
export async function importGguf(reader: GgufReader): Promise<ImportedModel> {
  const source = reader.path;
  const configJson = ggufConfigJson(reader.header, source);
  const config = parseModelConfig(configJson, `${source} (metadata)`);
  const byHfName = new Map<string, (typeof reader.header.tensors)[number]>();
  for (const t of reader.header.tensors) {
    const name = huggingFaceName(t.name);
    if (!name) throw new GgufError(`${source}: tensor ${t.name} is not part of a ${String(configJson.model_type)} model this importer knows`);
    byHfName.set(name, t);
  }
  const specs = parameterSpecs(config);
  const expected = new Set(specs.map((s) => s.name));
  for (const [name, t] of byHfName) if (!expected.has(name)) throw new GgufError(`${source}: tensor ${t.name} (${name}) does not belong to a model with this config (${config.num_hidden_layers} layers)`);
  const params = new Map<string, Float32Array>();
  for (const spec of specs) {
    const t = byHfName.get(spec.name);
    if (!t) throw new GgufError(`${source}: tensor for ${spec.name} is missing`);
    const shape = [...t.dims].reverse();
    if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
      throw new GgufError(`${source}: tensor ${t.name} has shape [${shape.join(', ')}] (Hugging Face order), the config needs [${spec.shape.join(', ')}] for ${spec.name}`);
    }
    let data = await reader.read(t.name);
    // Only the llama architecture is permuted: llama.cpp runs qwen2 with the "rotate half" (NeoX) rotary.
    const permuted = configJson.model_type === 'llama';
    const heads = !permuted ? 0 : /q_proj\./.test(spec.name) ? config.num_attention_heads : /k_proj\./.test(spec.name) ? config.num_key_value_heads : 0;
    if (heads > 0) data = unpermuteRows(data, spec.shape[0]!, spec.shape[1] ?? 1, heads);
    params.set(spec.name, data);
  }
  return { config, configJson, params };
}
