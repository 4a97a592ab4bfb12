// A model directory in the Hugging Face layout: config.json (LlamaConfig names) and model.safetensors
// (Hugging Face tensor names), so directories written here load in other tools and vice versa.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirectories, readJsonFile } from '../../storage/local-files.js';
import { decodeParameters } from '../state-files.js';
import { modelConfigToJson, parseModelConfig, type ModelConfig } from './config.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

export interface LoadedModel {
  config: ModelConfig;
  params: Map<string, Float32Array>;
}

async function writeAtomically(path: string, data: Uint8Array | string): Promise<void> {
  const temp = `${path}.partial-${process.pid}`;
  await writeFile(temp, data);
  await rename(temp, path);
}

export async function saveModelDir(dir: string, config: ModelConfig, weights: Uint8Array): Promise<void> {
  await makeDirectories(dir);
  await writeAtomically(join(dir, WEIGHTS_FILE), weights);
  await writeAtomically(join(dir, CONFIG_FILE), JSON.stringify(modelConfigToJson(config), null, 2) + '\n');
}

export async function loadModelDir(dir: string): Promise<LoadedModel> {
  const configPath = join(dir, CONFIG_FILE);
  const weightsPath = join(dir, WEIGHTS_FILE);
  const config = parseModelConfig(await readJsonFile(configPath), configPath);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(weightsPath);
  } catch (err) {
    throw new Error(`cannot read ${weightsPath}: ${(err as Error).message}`, { cause: err });
  }
  const params = decodeParameters(bytes, config, 'float32', weightsPath);
  return { config, params };
}
