// GGUF import: a model written the way llama.cpp's converter writes one (llama.cpp tensor names,
// reversed dims, q/k rows permuted for its adjacent-pair rotary) imports back to exactly the Hugging
// Face parameters and config; missing, extra and misshaped tensors and unimplemented architectures or
// RoPE variants fail naming what is wrong. A GGUF read directly and one imported into a model directory
// give the same model, and a bad file makes `import` write nothing.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeGguf, GgufReader, type GgufTensorToWrite, type TypedValue } from '../weights/gguf.js';
import { parseModelConfig } from './config.js';
import { importGguf } from './gguf-import.js';
import { loadModelDir } from './model-dir.js';
import { importGgufToDir, loadModel, loadModelConfig, loadModelTokenizer } from './model-source.js';
import { initParameters, parameterSpecs } from './params.js';

const dir = await mkdtemp(join(tmpdir(), 'gguf-import-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const config = parseModelConfig({ vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 50000, max_position_embeddings: 64, tie_word_embeddings: true }, 'test');
const params = initParameters(config, 7);
const shapes = new Map(parameterSpecs(config).map((p) => [p.name, p.shape]));

/** The converter's permutation, written as it is there: rows reshaped (heads, 2, half) and the last two axes swapped. */
function permute(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) for (let two = 0; two < 2; two++) for (let i = 0; i < half; i++) {
    const src = ((h * 2 + two) * half + i) * cols; // index (h, two, i) of the reshaped source
    const dst = ((h * half + i) * 2 + two) * cols; // index (h, i, two) after the swap
    out.set(w.subarray(src, src + cols), dst);
  }
  return out;
}

const LLAMA_CPP_NAMES: [string, string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'], ['self_attn.q_proj.weight', 'attn_q.weight'], ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'], ['self_attn.o_proj.weight', 'attn_output.weight'], ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'], ['mlp.up_proj.weight', 'ffn_up.weight'], ['mlp.down_proj.weight', 'ffn_down.weight'],
];

function llamaCppTensors(): GgufTensorToWrite[] {
  const f32 = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
  const out: GgufTensorToWrite[] = [
    { name: 'token_embd.weight', dims: [16, 40], typeId: 0, data: f32(params.get('model.embed_tokens.weight')!) },
    { name: 'output_norm.weight', dims: [16], typeId: 0, data: f32(params.get('model.norm.weight')!) },
  ];
  for (let l = 0; l < 2; l++) {
    for (const [hf, cpp] of LLAMA_CPP_NAMES) {
      let w = params.get(`model.layers.${l}.${hf}`)!;
      const rows = { 'attn_q.weight': 16, 'attn_k.weight': 8 }[cpp];
      if (rows) w = permute(w, rows, 16, cpp === 'attn_q.weight' ? 4 : 2);
      const shape = shapes.get(`model.layers.${l}.${hf}`)!;
      out.push({ name: `blk.${l}.${cpp}`, dims: [...shape].reverse(), typeId: 0, data: f32(w) });
    }
  }
  return out;
}

const META: [string, TypedValue][] = [
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['llama.block_count', { type: 'u32', value: 2 }],
  ['llama.context_length', { type: 'u32', value: 64 }],
  ['llama.embedding_length', { type: 'u32', value: 16 }],
  ['llama.feed_forward_length', { type: 'u32', value: 24 }],
  ['llama.attention.head_count', { type: 'u32', value: 4 }],
  ['llama.attention.head_count_kv', { type: 'u32', value: 2 }],
  ['llama.rope.freq_base', { type: 'f32', value: 50000 }],
  ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
  ['llama.vocab_size', { type: 'u32', value: 40 }],
  ['llama.rope.dimension_count', { type: 'u32', value: 4 }],
];

async function importFrom(name: string, meta: [string, TypedValue][], tensors: GgufTensorToWrite[]): Promise<Awaited<ReturnType<typeof importGguf>>> {
  const path = join(dir, name);
  await writeFile(path, encodeGguf(meta, tensors));
  const reader = await GgufReader.open(path);
  try {
    return await importGguf(reader);
  } finally {
    await reader.close();
  }
}

describe('GGUF import', () => {
  it('gives back the Hugging Face parameters exactly, q/k rows unpermuted, and the config (eps and theta as written in HF)', async () => {
    const m = await importFrom('model.gguf', META, llamaCppTensors());
    expect(m.config).toEqual(config);
    expect(m.configJson).toMatchObject({ model_type: 'llama', rms_norm_eps: 1e-5, rope_theta: 50000, tie_word_embeddings: true });
    expect([...m.params.keys()].sort()).toEqual([...params.keys()].sort());
    for (const [name, value] of params) expect(m.params.get(name), name).toEqual(value);
  });

  it('fails naming a missing tensor, a misshaped one and one that is not part of the model', async () => {
    const tensors = llamaCppTensors();
    await expect(importFrom('missing.gguf', META, tensors.filter((t) => t.name !== 'blk.1.ffn_up.weight'))).rejects.toThrow(/tensor for model.layers.1.mlp.up_proj.weight is missing/);
    const wrong = tensors.map((t) => (t.name === 'blk.0.attn_v.weight' ? { ...t, dims: [8, 16] } : t));
    await expect(importFrom('shape.gguf', META, wrong)).rejects.toThrow(/tensor blk.0.attn_v.weight has shape \[16, 8\] \(Hugging Face order\), the config needs \[8, 16\]/);
    const extra = [...tensors, { name: 'blk.2.attn_q.weight', dims: [16, 16], typeId: 0, data: new Uint8Array(1024) }];
    await expect(importFrom('extra.gguf', META, extra)).rejects.toThrow(/tensor blk.2.attn_q.weight \(model.layers.2.self_attn.q_proj.weight\) does not belong to a model with this config \(2 layers\)/);
    const unknown = [...tensors, { name: 'rope_freqs.weight', dims: [2], typeId: 0, data: new Uint8Array(8) }];
    await expect(importFrom('unknown.gguf', META, unknown)).rejects.toThrow(/tensor rope_freqs.weight is not part of a llama model/);
  });

  it('refuses other architectures and RoPE it does not implement, naming the metadata', async () => {
    const with_ = (k: string, v: TypedValue): [string, TypedValue][] => [...META.filter(([key]) => key !== k), [k, v]];
    await expect(importFrom('gemma.gguf', with_('general.architecture', { type: 'string', value: 'gemma2' }), llamaCppTensors())).rejects.toThrow(/general.architecture is "gemma2"; this importer reads llama, qwen2/);
    await expect(importFrom('yarn.gguf', with_('llama.rope.scaling.type', { type: 'string', value: 'yarn' }), llamaCppTensors())).rejects.toThrow(/metadata llama.rope.scaling.type is "yarn"; only plain RoPE/);
    await expect(importFrom('partial.gguf', with_('llama.rope.dimension_count', { type: 'u32', value: 2 }), llamaCppTensors())).rejects.toThrow(/rope.dimension_count is 2, but heads are 4 wide/);
  });
});

describe('GGUF files as models: read directly, or imported into a model directory', () => {
  it('loads the same weights and config straight from the file and from the directory `importGgufToDir` writes', async () => {
    const path = join(dir, 'direct.gguf');
    await writeFile(path, encodeGguf(META, llamaCppTensors()));
    expect(await loadModelConfig(path)).toEqual(config);
    const direct = await loadModel(path);
    for (const [name, value] of params) expect(direct.params.get(name), name).toEqual(value);
    const out = join(dir, 'imported');
    const summary = await importGgufToDir(path, out);
    // This GGUF carries no tokenizer, so the directory has none (a run on it uses the byte tokenizer).
    expect(summary.files).toEqual(['config.json', 'model.safetensors']);
    expect(summary.parameters).toBe([...params.values()].reduce((a, p) => a + p.length, 0));
    const loaded = await loadModelDir(out);
    expect(loaded.config).toEqual(config);
    for (const [name, value] of params) expect(loaded.params.get(name), name).toEqual(value);
    await expect(loadModelTokenizer(path)).rejects.toThrow(/has no tokenizer \(no tokenizer.ggml.model metadata\)/);
    await expect(importGgufToDir(path, out)).rejects.toThrow(/already exists/);
  });

  it('writes nothing for a truncated file, a wrong magic or a tensor type it does not dequantise, and says which', async () => {
    const whole = encodeGguf(META, llamaCppTensors());
    const q4k = llamaCppTensors().map((t) => (t.name === 'blk.1.ffn_down.weight' ? { ...t, typeId: 12 } : t));
    const cases: [string, Uint8Array, RegExp][] = [
      ['truncated.gguf', whole.subarray(0, whole.length - 100), /truncated/],
      ['magic.gguf', Uint8Array.from([0x47, 0x47, 0x4d, 0x4c, ...whole.subarray(4)]), /not a GGUF file \(it starts with 47 47 4d 4c/],
      ['q4k.gguf', encodeGguf(META, q4k), /tensor blk\.1\.ffn_down\.weight has type Q4_K, which this importer does not dequantise/],
    ];
    for (const [name, bytes, message] of cases) {
      await writeFile(join(dir, name), bytes);
      const out = join(dir, `${name}.out`);
      await expect(importGgufToDir(join(dir, name), out), name).rejects.toThrow(message);
      expect((await readdir(dir)).filter((f) => f.startsWith(`${name}.out`)), name).toEqual([]);
    }
  });
});
