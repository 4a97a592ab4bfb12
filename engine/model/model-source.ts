// Where a model comes from: a model directory in the Hugging Face layout, or a GGUF file read directly
// (dequantised in memory, its tokenizer rebuilt from its metadata). One place decides which, so the run's
// data, the engine thread and the CLI agree on what `model.path` names.
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirectories, readJsonFile } from '../../storage/local-files.js';
import { encodeParameters } from '../state-files.js';
import { HfTokenizer } from '../tokenizer/hf-tokenizer.js';
import { loadTokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, type Tokenizer } from '../tokenizer/tokenizer.js';
import { tokenizerFilesFromGguf } from '../tokenizer/gguf-tokenizer.js';
import { GgufReader } from '../weights/gguf.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { ggufConfigJson, importGguf } from './gguf-import.js';
import { CONFIG_FILE, importHuggingFaceDir as importModelDir, loadModelDir, WEIGHTS_FILE, type LoadedModel } from './model-dir.js';

/** A path ending in .gguf is a GGUF file; anything else a model directory. */
export const isGgufPath = (path: string): boolean => /\.gguf$/i.test(path);

async function withGguf<T>(path: string, use: (reader: GgufReader) => Promise<T> | T): Promise<T> {
  const reader = await GgufReader.open(path);
  try {
    return await use(reader);
  } finally {
    await reader.close();
  }
}

/** The architecture alone (cheap: a GGUF's header, a directory's config.json). */
export async function loadModelConfig(path: string): Promise<ModelConfig> {
  if (isGgufPath(path)) return withGguf(path, (r) => parseModelConfig(ggufConfigJson(r.header, path), `${path} (metadata)`));
  const configPath = join(path, CONFIG_FILE);
  return parseModelConfig(await readJsonFile(configPath), configPath);
}

/** Architecture and float32 weights. */
export async function loadModel(path: string): Promise<LoadedModel> {
  if (!isGgufPath(path)) return loadModelDir(path);
  return withGguf(path, async (r) => {
    const { config, params } = await importGguf(r);
    return { config, params };
  });
}

/** The model's own tokenizer: tokenizer.json of a directory, or the one a GGUF's metadata describes. */
export async function loadModelTokenizer(path: string): Promise<Tokenizer> {
  if (!isGgufPath(path)) return loadTokenizer(path);
  return withGguf(path, (r) => {
    const files = tokenizerFilesFromGguf(r.header, path);
    return new HfTokenizer({ tokenizer: files.tokenizer, config: files.config, tokenizerSource: `${path} (tokenizer metadata)`, configSource: `${path} (tokenizer metadata)` });
  });
}

export interface ImportSummary {
  config: ModelConfig;
  tensors: number;
  parameters: number;
  files: string[];
}

/**
 * Converts a GGUF file into a model directory (config.json, model.safetensors in float32 with Hugging Face
 * names, tokenizer.json, tokenizer_config.json). Everything is read and converted before anything is
 * written, and the directory appears whole: it is assembled beside `out` and renamed into place, so a
 * failure leaves no partial model. An existing `out` is refused rather than overwritten.
 */
export async function importGgufToDir(ggufPath: string, out: string): Promise<ImportSummary> {
  const { model, tokenizer } = await withGguf(ggufPath, async (r) => ({ model: await importGguf(r), tokenizer: tokenizerFilesFromGguf(r.header, ggufPath) }));
  const weights = encodeParameters(model.config, model.params);
  const files: Record<string, Uint8Array | string> = {
    [CONFIG_FILE]: JSON.stringify(model.configJson, null, 2) + '\n',
    [WEIGHTS_FILE]: weights,
    [TOKENIZER_FILE]: JSON.stringify(tokenizer.tokenizer) + '\n',
    [TOKENIZER_CONFIG_FILE]: JSON.stringify(tokenizer.config, null, 2) + '\n',
  };
  await writeDirectoryWhole(out, files);
  let parameters = 0;
  for (const p of model.params.values()) parameters += p.length;
  return { config: model.config, tensors: model.params.size, parameters, files: Object.keys(files) };
}

/**
 * Checks a Hugging Face model directory (config, every tensor of one file or a sharded checkpoint, the
 * tokenizer) and writes it in this project's layout, streamed so models over 2 GiB import: model-dir.ts.
 */
export async function importHuggingFaceDir(src: string, out: string): Promise<ImportSummary> {
  return importModelDir(src, out);
}

/** Writes `files` into a new directory `out` that appears only when all of them are written. */
export async function writeDirectoryWhole(out: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const staging = `${out}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await makeDirectories(staging);
  try {
    for (const [name, data] of Object.entries(files)) await writeFile(join(staging, name), data);
    await rename(staging, out).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST' || err.code === 'ENOTDIR') throw new Error(`${out} already exists: choose a new --out directory (nothing was overwritten)`, { cause: err });
      throw err;
    });
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
