// Where a model comes from: a model directory in the Hugging Face layout, or a GGUF file read directly
// (dequantised in memory, its tokenizer rebuilt from its metadata). One place decides which, so the run's
// data, the engine thread and the CLI agree on what `model.path` names.
import { join } from 'node:path';
import { readJsonFile } from '../../storage/local-files.js';
import { HfTokenizer } from '../tokenizer/hf-tokenizer.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, type Tokenizer } from '../tokenizer/tokenizer.js';
import { tokenizerFilesFromGguf } from '../tokenizer/gguf-tokenizer.js';
import { GgufReader } from '../weights/gguf.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { ggufConfigJson, importGguf } from './gguf-import.js';
import { CONFIG_FILE, loadModelDir, readSideFiles, writeModelDirectory, type LoadedModel, type ModelDirImport } from './model-dir.js';

const GGUF_TOKENIZER_KEY = 'tokenizer.ggml.model';

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
    if (!r.header.metadata.has(GGUF_TOKENIZER_KEY)) throw new Error(`${path} has no tokenizer (no ${GGUF_TOKENIZER_KEY} metadata): use model.tokenizer "byte"`);
    const files = tokenizerFilesFromGguf(r.header, path);
    return new HfTokenizer({ tokenizer: files.tokenizer, config: files.config, tokenizerSource: `${path} (tokenizer metadata)`, configSource: `${path} (tokenizer metadata)` });
  });
}

/**
 * The tokenizer and generation files a model keeps when it is written as a new directory: a directory's
 * own (copied as they are), or for a GGUF file the tokenizer.json and tokenizer_config.json rebuilt from
 * its metadata.
 */
export async function modelSideFiles(path: string): Promise<Record<string, Uint8Array | string>> {
  if (!isGgufPath(path)) return readSideFiles(path);
  // A GGUF without a tokenizer converts to a directory without one (runs on it use model.tokenizer "byte").
  const files = await withGguf(path, (r) => (r.header.metadata.has(GGUF_TOKENIZER_KEY) ? tokenizerFilesFromGguf(r.header, path) : undefined));
  if (!files) return {};
  return { [TOKENIZER_FILE]: JSON.stringify(files.tokenizer) + '\n', [TOKENIZER_CONFIG_FILE]: JSON.stringify(files.config, null, 2) + '\n' };
}

/**
 * Converts a GGUF file into a model directory (config.json, model.safetensors in float32 with Hugging Face
 * names, tokenizer.json, tokenizer_config.json), whole or not at all; an existing `out` is refused.
 */
export async function importGgufToDir(ggufPath: string, out: string): Promise<ModelDirImport> {
  const { config, params } = await loadModel(ggufPath);
  return writeModelDirectory(out, config, params, await modelSideFiles(ggufPath));
}
