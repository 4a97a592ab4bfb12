// A PEFT LoRA adapter on disk (adapter_model.safetensors with adapter_config.json beside it), read and
// checked against a base model, and merged into a new model directory that loads anywhere a plain
// Hugging Face model does.
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { readJsonFile } from '../../storage/local-files.js';
import { EngineInputError } from '../errors.js';
import { decodeAdapters } from './state-files.js';
import type { ModelConfig } from './config.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, LoraError, mergeAdapters, parseAdapterConfig, type LoraConfig } from './lora.js';
import { writeModelDirectory } from './model-dir.js';
import { loadModel, modelSideFiles } from './model-source.js';

export interface LoadedAdapter {
  lora: LoraConfig;
  baseModelNameOrPath: string | null;
  adapters: Map<string, Float32Array>;
  weightsPath: string;
  configPath: string;
}

/** adapter_model.safetensors itself, or a directory holding it; adapter_config.json sits beside it either way. */
export function adapterPaths(path: string): { weightsPath: string; configPath: string } {
  const weightsPath = /\.safetensors$/i.test(basename(path)) ? path : join(path, ADAPTER_WEIGHTS_FILE);
  return { weightsPath, configPath: join(dirname(weightsPath), ADAPTER_CONFIG_FILE) };
}

/** Reads an adapter for a model of `config`; a missing or misshaped tensor, or an unsupported setting, is refused by name. */
export async function loadAdapter(path: string, config: ModelConfig): Promise<LoadedAdapter> {
  const { weightsPath, configPath } = adapterPaths(path);
  let parsed: ReturnType<typeof parseAdapterConfig>;
  try {
    parsed = parseAdapterConfig(await readJsonFile(configPath), configPath);
  } catch (err) {
    if (err instanceof LoraError) throw new EngineInputError(err.message, { cause: err });
    throw err;
  }
  const bytes = await readFile(weightsPath).catch((err: NodeJS.ErrnoException) => {
    throw new EngineInputError(`cannot read ${weightsPath}: ${err.message}`, { cause: err });
  });
  const { baseModelNameOrPath, ...lora } = parsed;
  const adapters = decodeAdapters(bytes, config, lora, 'float32', weightsPath) as Map<string, Float32Array>;
  return { lora, baseModelNameOrPath, adapters, weightsPath, configPath };
}

export interface MergeSummary {
  config: ModelConfig;
  lora: LoraConfig;
  files: string[];
}


/**
 * Writes `out`: the base model with W' = W + (alpha/r)·B·A in every adapted projection (config.json,
 * model.safetensors in float32) and the base's tokenizer files (a directory's own, or rebuilt from a GGUF). The directory appears whole
 * or not at all, and an existing one is never overwritten.
 */
export async function mergeAdapterToDir(modelPath: string, adapterPath: string, out: string): Promise<MergeSummary> {
  const { config, params } = await loadModel(modelPath);
  const { lora, adapters } = await loadAdapter(adapterPath, config);
  const merged = mergeAdapters(config, lora, params, adapters);
  const { files } = await writeModelDirectory(out, config, merged, await modelSideFiles(modelPath));
  return { config, lora, files };
}
