// A model directory in the Hugging Face layout: config.json (LlamaConfig names) and model.safetensors, or a
// sharded checkpoint (model.safetensors.index.json and its shard files), with Hugging Face tensor names, so
// directories written here load in other tools and theirs load here. Weights are read tensor by tensor
// through file handles, so files over 2 GiB load and the peak memory is about the model's float32 size.
import { readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirectoryWhole, DirectoryExistsError, isErrno, makeDirectories, readJsonFile } from '../../storage/local-files.js';
import { EngineInputError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from '../tokenizer/tokenizer.js';
import { float32Tensor, SafetensorsFileReader, writeSafetensorsFile, type PieceOptions } from '../weights/safetensors-file.js';
import { float32ToBFloat16Bits, float32ToFloat16Bits, SafetensorsError, type SafeTensor } from '../weights/safetensors.js';
import { modelConfigToJson, parseModelConfig, type ModelConfig } from './config.js';
import { assertModelFits, parameterSpecs } from './params.js';
import { checkFiniteTensor, checkTiedHead, EMBEDDINGS, planParameterTensors, TIED_HEAD, type TensorInfo } from './weight-check.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

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

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    (err: unknown) => {
      if (isErrno(err, 'ENOENT')) return false;
      throw new EngineInputError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
    },
  );

/** The weights of a model directory, whichever form they take: one file or shards. */
interface OpenedWeights {
  /** What errors about the checkpoint as a whole name: model.safetensors or the index file. */
  source: string;
  tensors: Map<string, TensorInfo & { reader: SafetensorsFileReader }>;
  close(): Promise<void>;
}

async function closeAll(readers: Iterable<SafetensorsFileReader>): Promise<void> {
  await Promise.allSettled([...readers].map((r) => r.close()));
}

/** Runs `work`, turning a corrupt-file error into the engine's bad-input error, the same as a missing tensor's. */
async function asInput<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw err instanceof SafetensorsError ? new EngineInputError(err.message, { cause: err }) : err;
  }
}

/**
 * Opens model.safetensors, or else the index and every shard it names. As transformers does, a single
 * model.safetensors wins over an index beside it.
 */
async function openWeights(dir: string, options: PieceOptions): Promise<OpenedWeights> {
  const single = join(dir, WEIGHTS_FILE);
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (await exists(single)) {
    const reader = await asInput(SafetensorsFileReader.open(single, options));
    const tensors = new Map([...reader.header.entries].map(([name, e]) => [name, { dtype: e.dtype, shape: e.shape, reader }]));
    return { source: single, tensors, close: () => reader.close() };
  }
  if (!(await exists(indexPath))) throw new EngineInputError(`${dir}: no ${WEIGHTS_FILE} and no ${WEIGHTS_INDEX_FILE}; a model directory needs its weights in one of them`);
  return openShards(dir, indexPath, options);
}

/** Shard names are plain file names in the directory: a path could reach outside it. */
const isPlainFileName = (name: string): boolean => name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);

function parseIndex(json: unknown, indexPath: string): Map<string, string> {
  const bad = (what: string): EngineInputError => new EngineInputError(`${indexPath}: ${what}`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('must be a JSON object with a "weight_map"');
  const { weight_map: weightMap, metadata } = json as Record<string, unknown>;
  if (metadata !== undefined && metadata !== null && (typeof metadata !== 'object' || Array.isArray(metadata))) throw bad('"metadata" must be an object');
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) throw bad('"weight_map" must be an object mapping tensor names to shard files');
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || !isPlainFileName(file)) throw bad(`weight_map maps tensor ${name} to ${JSON.stringify(file)}, not a file name in the directory`);
    map.set(name, file);
  }
  if (map.size === 0) throw bad('"weight_map" lists no tensors');
  return map;
}

/**
 * The shards of a sharded checkpoint, checked against its index: every shard the index names must exist,
 * each tensor must sit in exactly the shard the index names, and no shard may hold a tensor the index does
 * not list (transformers would never load it, so the two disagree about the model).
 */
async function openShards(dir: string, indexPath: string, options: PieceOptions): Promise<OpenedWeights> {
  const weightMap = parseIndex(await readJsonFile(indexPath), indexPath);
  const readers = new Map<string, SafetensorsFileReader>();
  try {
    for (const [tensor, file] of weightMap) {
      if (readers.has(file)) continue;
      const path = join(dir, file);
      if (!(await exists(path))) throw new EngineInputError(`${indexPath}: shard ${file} (holding tensor ${tensor}) does not exist in ${dir}`);
      readers.set(file, await asInput(SafetensorsFileReader.open(path, options)));
    }
    const sorted = [...readers].sort(([a], [b]) => (a < b ? -1 : 1));
    // A duplicate is reported as such even when the index names one of its two shards.
    const holder = new Map<string, string>();
    for (const [file, reader] of sorted) {
      for (const name of reader.header.entries.keys()) {
        const other = holder.get(name);
        if (other !== undefined) throw new EngineInputError(`${indexPath}: tensor ${name} is in two shards, ${other} and ${file}`);
        holder.set(name, file);
      }
    }
    const tensors: OpenedWeights['tensors'] = new Map();
    for (const [file, reader] of sorted) {
      for (const [name, e] of reader.header.entries) {
        const listed = weightMap.get(name);
        if (listed === undefined) throw new EngineInputError(`${reader.path}: holds tensor ${name}, which ${WEIGHTS_INDEX_FILE} does not list`);
        if (listed !== file) throw new EngineInputError(`${reader.path}: holds tensor ${name}, which ${WEIGHTS_INDEX_FILE} places in ${listed}`);
        tensors.set(name, { dtype: e.dtype, shape: e.shape, file: reader.path, reader });
      }
    }
    for (const [name, file] of weightMap) {
      if (!tensors.has(name)) throw new EngineInputError(`${indexPath}: tensor ${name} is listed in shard ${file}, which does not hold it`);
    }
    return { source: indexPath, tensors, close: () => closeAll(readers.values()) };
  } catch (err) {
    await closeAll(readers.values());
    throw err;
  }
}

async function readConfig(dir: string): Promise<ModelConfig> {
  const configPath = join(dir, CONFIG_FILE);
  const config = parseModelConfig(await readJsonFile(configPath), configPath);
  assertModelFits(config, configPath);
  return config;
}

/**
 * Loads a model directory's config and float32 weights. Every tensor's name, shape and dtype is checked
 * against the config before any data is read (see planParameterTensors for what is accepted), then the
 * parameters are read one at a time (F32, F16, BF16 or F64 converted to float32) and checked finite.
 */
export async function loadModelDir(dir: string, options: PieceOptions = {}): Promise<LoadedModel> {
  const config = await readConfig(dir);
  const weights = await openWeights(dir, options);
  try {
    const plan = planParameterTensors(weights.tensors, config, weights.source);
    const read = async (name: string): Promise<Float32Array> => {
      const t = weights.tensors.get(name)!;
      return asInput(t.reader.readFloat32(name));
    };
    const params = new Map<string, Float32Array>();
    for (const spec of plan.specs) {
      const values = await read(spec.name);
      checkFiniteTensor(values, spec.name, weights.tensors.get(spec.name)!.file ?? weights.source);
      params.set(spec.name, values);
    }
    if (plan.tiedHead) checkTiedHead(await read(TIED_HEAD), params.get(EMBEDDINGS)!, weights.tensors.get(TIED_HEAD)!.file ?? weights.source);
    return { config, params };
  } finally {
    await weights.close();
  }
}

/** The dtypes a model directory can be written in: float32 as trained, or halved for smaller files. */
export type ExportDType = 'float32' | 'bfloat16' | 'float16';

export interface WriteModelOptions extends PieceOptions {
  /** float32 by default (encodeParameters' exact bytes); bfloat16 and float16 round to nearest even. */
  dtype?: ExportDType;
}

function halfTensor(values: Float32Array, shape: number[], dtype: 'bfloat16' | 'float16'): SafeTensor {
  const bits = new Uint16Array(values.length);
  const convert = dtype === 'bfloat16' ? float32ToBFloat16Bits : float32ToFloat16Bits;
  for (let i = 0; i < values.length; i++) bits[i] = convert(values[i]!);
  const data = new Uint8Array(bits.buffer);
  // safetensors is little-endian; swap on the rare big-endian host.
  if (new Uint8Array(Uint16Array.of(1).buffer)[0] === 0) for (let i = 0; i < data.length; i += 2) [data[i], data[i + 1]] = [data[i + 1]!, data[i]!];
  return { dtype: dtype === 'bfloat16' ? 'BF16' : 'F16', shape: [...shape], data };
}

/** Writes config.json and model.safetensors (float32: encodeParameters' exact bytes, streamed; or converted) into `dir`. */
async function writeModelFiles(dir: string, config: ModelConfig, params: ReadonlyMap<string, Float32Array>, options: WriteModelOptions): Promise<void> {
  const dtype = options.dtype ?? 'float32';
  const tensors = new Map<string, SafeTensor>();
  for (const spec of parameterSpecs(config)) {
    const values = params.get(spec.name)!;
    tensors.set(spec.name, dtype === 'float32' ? float32Tensor(values, spec.shape) : halfTensor(values, spec.shape, dtype));
  }
  await writeSafetensorsFile(join(dir, WEIGHTS_FILE), tensors, { format: 'pt' }, options);
  await writeFile(join(dir, CONFIG_FILE), JSON.stringify({ ...modelConfigToJson(config), torch_dtype: dtype }, null, 2) + '\n');
}

/** Tokenizer and generation files a Hugging Face directory may carry, copied as they are. */
export const COPIED_FILES: readonly string[] = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, CHAT_TEMPLATE_FILE, 'special_tokens_map.json', 'generation_config.json'];

export interface ModelDirImport {
  config: ModelConfig;
  /** Parameter tensors written. */
  tensors: number;
  parameters: number;
  /** Files written into `out`, by name. */
  files: string[];
}

/**
 * Checks a Hugging Face model directory (config, every tensor, tokenizer.json when present) and writes it to
 * the new directory `out` in this project's layout: config.json, one float32 model.safetensors (streamed, so
 * over 2 GiB is fine; transformers loads such a file too), and the tokenizer and generation files it has.
 *
 * tokenizer.json is not required: a model trained here with the byte tokenizer has none (and runs with
 * model.tokenizer "byte"). When present it must load and its vocabulary must fit vocab_size, since a run
 * with model.tokenizer "auto" would use it.
 *
 * `out` must not exist (or be an empty directory). Everything is assembled in a sibling staging directory and
 * renamed into place, so a failure leaves neither `out` nor the staging directory behind.
 */
export async function importHuggingFaceDir(src: string, out: string, options: PieceOptions = {}): Promise<ModelDirImport> {
  // Checked first so a taken name fails at once, not after reading the whole model; the rename checks again.
  await refuseExisting(out);
  const { config, params } = await loadModelDir(src, options);
  const sideFiles = await readSideFiles(src);
  if (sideFiles[TOKENIZER_FILE] !== undefined) {
    const tokenizer = await loadTokenizer(src);
    if (tokenizer.vocabSize > config.vocab_size) {
      throw new EngineInputError(`${join(src, TOKENIZER_FILE)}: the tokenizer has ${tokenizer.vocabSize} tokens but ${join(src, CONFIG_FILE)} vocab_size is ${config.vocab_size}`);
    }
  }
  return writeModelDirectory(out, config, params, sideFiles, options);
}

/** The files of COPIED_FILES a model directory has, by name, as they are. */
export async function readSideFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const name of COPIED_FILES) {
    const data = await readFile(join(dir, name)).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new EngineInputError(`cannot read ${join(dir, name)}: ${(err as Error).message}`, { cause: err });
    });
    if (data !== undefined) files[name] = data;
  }
  return files;
}

async function refuseExisting(out: string): Promise<void> {
  const present = await readdir(out).catch((err: unknown) => (isErrno(err, 'ENOENT') ? [] : ['(not an empty directory)']));
  if (present.length > 0) throw new EngineInputError(`${out} already exists: choose a new output directory (nothing was overwritten)`);
}

/**
 * Writes the new model directory `out`: config.json, one float32 model.safetensors (streamed, so over 2 GiB
 * is fine; transformers loads such a file too) and `sideFiles` (tokenizer and generation files). It is
 * assembled in a sibling staging directory and renamed into place, so `out` appears whole or not at all,
 * and an existing non-empty `out` is never overwritten.
 */
export async function writeModelDirectory(out: string, config: ModelConfig, params: ReadonlyMap<string, Float32Array>, sideFiles: Record<string, Uint8Array | string>, options: WriteModelOptions = {}): Promise<ModelDirImport> {
  await refuseExisting(out);
  await createDirectoryWhole(out, async (dir) => {
    await writeModelFiles(dir, config, params, options);
    for (const [name, data] of Object.entries(sideFiles)) await writeFile(join(dir, name), data);
  }).catch((err: unknown) => {
    throw err instanceof DirectoryExistsError ? new EngineInputError(err.message, { cause: err }) : err;
  });
  let parameters = 0;
  for (const p of params.values()) parameters += p.length;
  return { config, tensors: params.size, parameters, files: [CONFIG_FILE, WEIGHTS_FILE, ...Object.keys(sideFiles)] };
}
