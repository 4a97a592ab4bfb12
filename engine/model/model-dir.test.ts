// Hugging Face model directories: a `dro model init` directory imports byte for byte, a sharded checkpoint
// loads and imports to the same weights as the single file, every inconsistency between index, shards and
// config is refused naming the file and tensor (leaving nothing written), the Hugging Face extras that are
// harmless load, and a model whose weights file is over 2 GiB loads with memory about its float32 size.
import { copyFile, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors, tensorFrom, toFloat32, type SafetensorsDtype, type SafeTensor } from '../weights/safetensors.js';
import { modelConfigToJson, parseModelConfig, type ModelConfig } from './config.js';
import { CONFIG_FILE, importHuggingFaceDir, loadModelDir, saveModelDir, WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from './model-dir.js';
import { initParameters, parameterSpecs } from './params.js';
import { encodeParameters } from './state-files.js';

const dirs: string[] = [];
const tempDir = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'model-dir-'));
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const tied = parseModelConfig({ vocab_size: 24, hidden_size: 16, intermediate_size: 20, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true }, 'test');
const untied: ModelConfig = { ...tied, tie_word_embeddings: false };

/** Tensors of `config`'s parameters, stored as `dtype`. */
function tensorsOf(config: ModelConfig, params: ReadonlyMap<string, Float32Array>, dtype: SafetensorsDtype = 'F32'): Map<string, SafeTensor> {
  return new Map(parameterSpecs(config).map((s) => [s.name, tensorFrom(params.get(s.name)!, s.shape, dtype)]));
}

async function writeConfig(dir: string, config: ModelConfig): Promise<void> {
  await writeFile(join(dir, CONFIG_FILE), JSON.stringify(modelConfigToJson(config)));
}

/** A sharded checkpoint as transformers writes one: tensors dealt round-robin into `shards` files, and the index. */
async function writeSharded(dir: string, config: ModelConfig, tensors: Map<string, SafeTensor>, shards = 3, index?: (map: Record<string, string>) => Record<string, string>): Promise<Record<string, string>> {
  await writeConfig(dir, config);
  const files = Array.from({ length: shards }, (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`);
  const parts = files.map(() => new Map<string, SafeTensor>());
  const weightMap: Record<string, string> = {};
  [...tensors].forEach(([name, t], i) => {
    parts[i % shards]!.set(name, t);
    weightMap[name] = files[i % shards]!;
  });
  for (const [i, f] of files.entries()) await writeFile(join(dir, f), encodeSafetensors(parts[i]!, { format: 'pt' }));
  const total = [...tensors.values()].reduce((a, t) => a + t.data.length, 0);
  await writeFile(join(dir, WEIGHTS_INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: index ? index(weightMap) : weightMap }));
  return weightMap;
}

async function singleDir(config: ModelConfig, tensors: Map<string, SafeTensor>): Promise<string> {
  const dir = await tempDir();
  await writeConfig(dir, config);
  await writeFile(join(dir, WEIGHTS_FILE), encodeSafetensors(tensors, { format: 'pt' }));
  return dir;
}

const params = initParameters(untied, 11);

describe('importHuggingFaceDir', () => {
  it('imports a `dro model init` directory unchanged: the same config.json and model.safetensors bytes', async () => {
    const src = await tempDir();
    // What modelInit does: initParameters, encodeParameters, saveModelDir.
    await saveModelDir(src, tied, encodeParameters(tied, initParameters(tied, 5)));
    const out = join(await tempDir(), 'imported');
    const summary = await importHuggingFaceDir(src, out, { pieceBytes: 64 });
    expect(summary.files).toEqual([CONFIG_FILE, WEIGHTS_FILE]);
    expect(summary.tensors).toBe(parameterSpecs(tied).length);
    expect(summary.config).toEqual(tied);
    for (const f of [CONFIG_FILE, WEIGHTS_FILE]) expect(Buffer.compare(await readFile(join(out, f)), await readFile(join(src, f))), f).toBe(0);
    expect(await readdir(join(out, '..'))).toEqual(['imported']);
  });

  it('imports a sharded BF16 directory to the same weights as the single-file one, and copies the tokenizer files', async () => {
    const sharded = await tempDir();
    await writeSharded(sharded, untied, tensorsOf(untied, params, 'BF16'));
    const single = await singleDir(untied, tensorsOf(untied, params, 'BF16'));
    const fixture = join(import.meta.dirname, '../tokenizer/fixtures/smollm2');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(fixture, f), join(sharded, f));
    await writeFile(join(sharded, 'generation_config.json'), '{"do_sample": false}\n');
    // The fixture's vocabulary is larger than this model's.
    await expect(importHuggingFaceDir(sharded, join(sharded, 'x'))).rejects.toThrow(/tokenizer\.json: the tokenizer has \d+ tokens but .*config\.json vocab_size is 24/);
    await rm(join(sharded, 'tokenizer.json'));
    await rm(join(sharded, 'tokenizer_config.json'));

    const a = join(await tempDir(), 'a');
    const b = join(await tempDir(), 'b');
    const summary = await importHuggingFaceDir(sharded, a);
    await importHuggingFaceDir(single, b);
    expect(summary.files).toEqual([CONFIG_FILE, WEIGHTS_FILE, 'generation_config.json']);
    expect(Buffer.compare(await readFile(join(a, WEIGHTS_FILE)), await readFile(join(b, WEIGHTS_FILE)))).toBe(0);
    expect(await readFile(join(a, 'generation_config.json'), 'utf8')).toBe('{"do_sample": false}\n');
    // BF16 in, float32 out: the values are the BF16-rounded weights.
    const loaded = await loadModelDir(a);
    const rounded = toFloat32(tensorFrom(params.get('model.layers.1.mlp.down_proj.weight')!, [16, 20], 'BF16'));
    expect(loaded.params.get('model.layers.1.mlp.down_proj.weight')).toEqual(rounded);
    expect(rounded).not.toEqual(params.get('model.layers.1.mlp.down_proj.weight'));
  });

  it('copies a tokenizer.json whose vocabulary fits', async () => {
    const big = { ...untied, vocab_size: 1400 };
    const src = await singleDir(big, tensorsOf(big, initParameters(big, 1)));
    const fixture = join(import.meta.dirname, '../tokenizer/fixtures/smollm2');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(fixture, f), join(src, f));
    const out = join(await tempDir(), 'm');
    expect((await importHuggingFaceDir(src, out)).files).toEqual([CONFIG_FILE, WEIGHTS_FILE, 'tokenizer.json', 'tokenizer_config.json']);
    expect(Buffer.compare(await readFile(join(out, 'tokenizer.json')), await readFile(join(fixture, 'tokenizer.json')))).toBe(0);
  });

  it('refuses a missing or misshaped tensor naming it, and leaves nothing behind', async () => {
    const missing = tensorsOf(untied, params);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    const misshaped = tensorsOf(untied, params);
    misshaped.set('model.layers.0.self_attn.k_proj.weight', tensorFrom(new Float32Array(16 * 16), [16, 16]));
    for (const [tensors, message] of [
      [missing, /model\.safetensors: tensor model\.layers\.1\.mlp\.up_proj\.weight is missing/],
      [misshaped, /model\.safetensors: tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape \[16, 16\], the model needs \[8, 16\]/],
    ] as const) {
      const src = await singleDir(untied, tensors);
      const parent = await tempDir();
      await expect(importHuggingFaceDir(src, join(parent, 'out'))).rejects.toThrow(message);
      expect(await readdir(parent)).toEqual([]);
    }
  });

  it('refuses an existing non-empty output directory before reading anything, and overwrites nothing', async () => {
    const src = await singleDir(untied, tensorsOf(untied, params));
    const out = await tempDir();
    await writeFile(join(out, 'keep.txt'), 'mine');
    await expect(importHuggingFaceDir(src, out)).rejects.toThrow(/already exists: choose a new output directory/);
    expect(await readdir(out)).toEqual(['keep.txt']);
  });
});

describe('loadModelDir: sharded checkpoints', () => {
  it('loads a sharded checkpoint to exactly the single file weights, with any piece size', async () => {
    const dir = await tempDir();
    await writeSharded(dir, untied, tensorsOf(untied, params), 4);
    const loaded = await loadModelDir(dir, { pieceBytes: 5 });
    expect(loaded.config).toEqual(untied);
    for (const s of parameterSpecs(untied)) expect(loaded.params.get(s.name), s.name).toEqual(params.get(s.name));
  });

  const refusals: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['an index naming a missing shard', async (d) => void (await rm(join(d, 'model-00002-of-00003.safetensors'))), /model\.safetensors\.index\.json: shard model-00002-of-00003\.safetensors \(holding tensor .+\) does not exist/],
    [
      'a tensor in two shards',
      async (d) => {
        const name = 'model.norm.weight';
        const f1 = join(d, 'model-00001-of-00003.safetensors');
        const t = decodeSafetensors(await readFile(f1)).tensors;
        if (t.has(name)) throw new Error('test layout changed');
        t.set(name, tensorFrom(params.get(name)!, [16]));
        await writeFile(f1, encodeSafetensors(t));
      },
      /model\.safetensors\.index\.json: tensor model\.norm\.weight is in two shards, model-0000\d-of-00003\.safetensors and model-0000\d-of-00003\.safetensors/,
    ],
    [
      'a shard holding a tensor the index does not list',
      async (d) => {
        const f1 = join(d, 'model-00001-of-00003.safetensors');
        const t = decodeSafetensors(await readFile(f1)).tensors;
        t.set('model.layers.7.mlp.up_proj.weight', tensorFrom(new Float32Array(4), [4]));
        await writeFile(f1, encodeSafetensors(t));
      },
      /model-00001-of-00003\.safetensors: holds tensor model\.layers\.7\.mlp\.up_proj\.weight, which model\.safetensors\.index\.json does not list/,
    ],
    [
      'an index placing a tensor in the wrong shard',
      async (d) => {
        const index = JSON.parse(await readFile(join(d, WEIGHTS_INDEX_FILE), 'utf8')) as { weight_map: Record<string, string> };
        index.weight_map['model.embed_tokens.weight'] = 'model-00003-of-00003.safetensors';
        await writeFile(join(d, WEIGHTS_INDEX_FILE), JSON.stringify(index));
      },
      /model-00001-of-00003\.safetensors: holds tensor model\.embed_tokens\.weight, which model\.safetensors\.index\.json places in model-00003-of-00003\.safetensors/,
    ],
    [
      'an index listing a tensor no shard holds',
      async (d) => {
        const index = JSON.parse(await readFile(join(d, WEIGHTS_INDEX_FILE), 'utf8')) as { weight_map: Record<string, string> };
        index.weight_map['model.extra.weight'] = 'model-00002-of-00003.safetensors';
        await writeFile(join(d, WEIGHTS_INDEX_FILE), JSON.stringify(index));
      },
      /model\.safetensors\.index\.json: tensor model\.extra\.weight is listed in shard model-00002-of-00003\.safetensors, which does not hold it/,
    ],
    [
      'a shard path outside the directory',
      async (d) => {
        const index = JSON.parse(await readFile(join(d, WEIGHTS_INDEX_FILE), 'utf8')) as { weight_map: Record<string, string> };
        index.weight_map['model.norm.weight'] = '../model-00001-of-00003.safetensors';
        await writeFile(join(d, WEIGHTS_INDEX_FILE), JSON.stringify(index));
      },
      /model\.safetensors\.index\.json: weight_map maps tensor model\.norm\.weight to "\.\.\/model-00001-of-00003\.safetensors", not a file name in the directory/,
    ],
    ['an index without a weight_map', async (d) => void (await writeFile(join(d, WEIGHTS_INDEX_FILE), '{"metadata": {}}')), /model\.safetensors\.index\.json: "weight_map" must be an object/],
    [
      'a misshaped tensor in a shard, naming the shard',
      async (d) => {
        const f = join(d, 'model-00001-of-00003.safetensors');
        const t = decodeSafetensors(await readFile(f)).tensors;
        t.set('model.embed_tokens.weight', tensorFrom(new Float32Array(24 * 8), [24, 8]));
        await writeFile(f, encodeSafetensors(t));
      },
      /model-00001-of-00003\.safetensors: tensor model\.embed_tokens\.weight has shape \[24, 8\], the model needs \[24, 16\]/,
    ],
    ['no weights at all', async (d) => void (await rm(join(d, WEIGHTS_INDEX_FILE))), /no model\.safetensors and no model\.safetensors\.index\.json/],
  ];
  for (const [what, spoil, message] of refusals) {
    it(`refuses ${what}`, async () => {
      const dir = await tempDir();
      await writeSharded(dir, untied, tensorsOf(untied, params));
      await spoil(dir);
      await expect(loadModelDir(dir)).rejects.toThrow(message);
    });
  }
});

describe('loadModelDir: Hugging Face extras', () => {
  const tiedParams = initParameters(tied, 4);

  it('accepts rotary inv_freq buffers and an lm_head.weight that copies tied embeddings', async () => {
    const t = tensorsOf(tied, tiedParams, 'F16');
    t.set('model.rotary_emb.inv_freq', tensorFrom(new Float32Array(2), [2]));
    t.set('model.layers.0.self_attn.rotary_emb.inv_freq', tensorFrom(new Float32Array(2), [2]));
    t.set('lm_head.weight', t.get('model.embed_tokens.weight')!);
    const loaded = await loadModelDir(await singleDir(tied, t));
    expect([...loaded.params.keys()]).toEqual(parameterSpecs(tied).map((s) => s.name));
  });

  it('refuses an lm_head.weight that differs from tied embeddings, and names a missing untied head', async () => {
    const t = tensorsOf(tied, tiedParams);
    t.set('lm_head.weight', tensorFrom(new Float32Array(24 * 16).fill(0.5), [24, 16]));
    await expect(loadModelDir(await singleDir(tied, t))).rejects.toThrow(/model\.safetensors: tensor lm_head\.weight differs from model\.embed_tokens\.weight at element 0 .* tie_word_embeddings is true/);
    await expect(loadModelDir(await singleDir(untied, tensorsOf(tied, tiedParams)))).rejects.toThrow(/tensor lm_head\.weight is missing \(tie_word_embeddings is false;/);
  });

  it('refuses other tensors the config does not use', async () => {
    const t = tensorsOf(tied, tiedParams);
    t.set('model.layers.0.self_attn.o_proj.bias', tensorFrom(new Float32Array(16), [16]));
    await expect(loadModelDir(await singleDir(tied, t))).rejects.toThrow(/model\.safetensors: 1 tensor\(s\) the model config does not use, e\.g\. model\.layers\.0\.self_attn\.o_proj\.bias/);
  });
});

describe('loadModelDir: a weights file over 2 GiB', () => {
  // A sparse file: model.safetensors is 2.2 GiB on paper, zero-filled except for the final norm weights written
  // past the 2 GiB mark, so it costs no disk and no time to write. Loading it reads every tensor by offset;
  // the process's memory grows by about the float32 model (2.2 GiB), not twice the file.
  it('loads, with every tensor read by offset and peak memory about the float32 size', async () => {
    const config = parseModelConfig({ vocab_size: 131072, hidden_size: 4096, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 32, num_key_value_heads: 8, tie_word_embeddings: true }, 'big');
    const dir = await tempDir();
    await writeConfig(dir, config);
    const specs = parameterSpecs(config);
    // Names sort as the writer orders them (all F32): embed, layers.0.*, norm, so the final norm is last.
    const names = specs.map((s) => s.name).sort();
    let offset = 0;
    const entries: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    const at = new Map<string, number>();
    for (const name of names) {
      const spec = specs.find((s) => s.name === name)!;
      const bytes = spec.shape.reduce((a, b) => a * b, 1) * 4;
      entries[name] = { dtype: 'F32', shape: spec.shape, data_offsets: [offset, offset + bytes] };
      at.set(name, offset);
      offset += bytes;
    }
    const json = JSON.stringify(entries);
    const padded = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
    const header = new Uint8Array(8 + padded.length);
    new DataView(header.buffer).setBigUint64(0, BigInt(padded.length), true);
    header.set(new TextEncoder().encode(padded), 8);
    const h = await open(join(dir, WEIGHTS_FILE), 'w');
    await h.write(header, 0, header.length, 0);
    const norm = Float32Array.from({ length: 4096 }, (_, i) => 1 + i / 4096);
    await h.write(new Uint8Array(norm.buffer), 0, norm.byteLength, header.length + at.get('model.norm.weight')!);
    await h.truncate(header.length + offset);
    await h.close();
    const fileBytes = header.length + offset;
    expect(fileBytes).toBeGreaterThan(2 ** 31 + 2 ** 27);
    expect(at.get('model.norm.weight')!).toBeGreaterThan(2 ** 31);

    const base = process.memoryUsage.rss();
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
    let loaded: Awaited<ReturnType<typeof loadModelDir>>;
    try {
      loaded = await loadModelDir(dir);
      peak = Math.max(peak, process.memoryUsage.rss());
    } finally {
      clearInterval(timer);
    }
    expect(loaded.params.get('model.norm.weight')).toEqual(norm);
    expect(loaded.params.get('model.embed_tokens.weight')!.length).toBe(131072 * 4096);
    const float32Bytes = offset;
    console.log(`weights file ${(fileBytes / 2 ** 30).toFixed(2)} GiB; memory grew by at most ${((peak - base) / 2 ** 30).toFixed(2)} GiB`);
    expect(peak - base).toBeLessThan(float32Bytes * 1.25);
  });
});
