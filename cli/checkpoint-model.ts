// A run's checkpoint as a model a person or another tool can use: its architecture, its weights (the trained
// ones, or under LoRA the base with the adapters merged in), its tokenizer, and the Hugging Face directory
// `dro checkpoints --export` writes (config.json, model.safetensors, generation_config.json, tokenizer files;
// a PEFT adapter directory for LoRA runs). Read straight from the run's store, S3 or a directory.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkpointState, type CheckpointState } from '../activities/records.js';
import { runTokenizer } from '../activities/run-data.js';
import { parseRunConfig, type RunConfig } from '../dro/config.js';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  ByteTokenizer,
  decodeAdapters,
  decodeParameters,
  encodeParameters,
  initParameters,
  loadModel,
  loadModelConfig,
  loadModelTokenizer,
  mergeAdapters,
  modelSideFiles,
  parseModelConfig,
  WEIGHTS_FILE,
  writeModelDirectory,
  type ExportDType,
  type ModelConfig,
  type Tokenizer,
} from '../engine/index.js';
import { CheckpointError, STATE_FILE, loadCheckpoint, loadLatestCheckpoint, type LoadedCheckpoint } from '../storage/checkpoints.js';
import { writeNewDirectory } from '../storage/local-files.js';
import { RunError, storeFor } from './client.js';

export interface RunCheckpoint {
  runId: string;
  step: number;
  checkpoint: LoadedCheckpoint;
  state: CheckpointState;
  config: RunConfig;
  modelConfig: ModelConfig;
}

/** Checkpoint `step` of a run (or its newest valid one), with the run's config and model architecture. */
export async function readRunCheckpoint(uri: string, runId: string, step: number | 'latest'): Promise<RunCheckpoint> {
  const store = await storeFor(uri);
  let checkpoint: LoadedCheckpoint;
  if (step === 'latest') {
    const latest = await loadLatestCheckpoint(store, runId);
    if (!latest.checkpoint) throw new RunError(`run ${runId} has no valid checkpoint in ${uri}`);
    checkpoint = latest.checkpoint;
  } else {
    try {
      checkpoint = await loadCheckpoint(store, runId, step);
    } catch (err) {
      if (err instanceof CheckpointError) throw new RunError(err.message);
      throw err;
    }
  }
  const state = checkpointState(checkpoint);
  const config = parseRunConfig(state.config);
  return { runId, step: checkpoint.ref.step, checkpoint, state, config, modelConfig: await architecture(config) };
}

/** The run's model architecture: model.init for a new model, else the base model's config (which must be readable here). */
async function architecture(config: RunConfig): Promise<ModelConfig> {
  if (config.model.path === null) return parseModelConfig({ model_type: 'llama', ...config.model.init }, 'model.init');
  return loadModelConfig(config.model.path).catch((err: unknown) => {
    throw new RunError(`the run's base model ${config.model.path} cannot be read here (${(err as Error).message}); its architecture and tokenizer come from it`);
  });
}

/** The frozen base of a LoRA run, checked against the sha256 its checkpoint recorded, so adapters never merge into the wrong base. */
async function loraBase(run: RunCheckpoint): Promise<Map<string, Float32Array>> {
  const { config, modelConfig, state } = run;
  const params = config.model.path === null ? initParameters(modelConfig, config.seed) : (await loadModel(config.model.path)).params;
  const recorded = state.loraBase?.sha256;
  const digest = createHash('sha256').update(encodeParameters(modelConfig, params)).digest('hex');
  if (recorded !== undefined && recorded !== digest) {
    throw new RunError(`the base model ${config.model.path ?? '(initialised from the seed)'} is not the one run ${run.runId} trained on (sha256 ${digest.slice(0, 12)}…, the checkpoint recorded ${recorded.slice(0, 12)}…)`);
  }
  return params;
}

/** The checkpoint's weights as a whole model: the trained ones, or the base with the LoRA adapters merged in. */
export async function checkpointParameters(run: RunCheckpoint): Promise<Map<string, Float32Array>> {
  const { config, modelConfig, checkpoint } = run;
  const source = `${checkpoint.ref.prefix}`;
  if (config.model.loraRank === 0) return decodeParameters(checkpoint.files[WEIGHTS_FILE]!, modelConfig, 'float32', `${source}${WEIGHTS_FILE}`);
  const lora = { rank: config.model.loraRank, alpha: config.model.loraAlpha, targets: config.model.loraTargets };
  const adapters = decodeAdapters(checkpoint.files[ADAPTER_WEIGHTS_FILE]!, modelConfig, lora, 'float32', `${source}${ADAPTER_WEIGHTS_FILE}`);
  return mergeAdapters(modelConfig, lora, await loraBase(run), adapters);
}

/** The tokenizer the run trained with (the byte tokenizer for a new model, else the model's). */
export async function checkpointTokenizer(run: RunCheckpoint): Promise<Tokenizer> {
  try {
    return await runTokenizer(run.config);
  } catch (err) {
    throw new RunError((err as Error).message, { cause: err });
  }
}

/** What a directory without tokenizer files says about the byte tokenizer its model was trained with. */
const BYTE = new ByteTokenizer().special;
export const BYTE_TOKENIZER_NOTE = [
  '# Tokenizer',
  '',
  "This model was trained with dro-temporal's byte tokenizer, which has no tokenizer.json: ids 0-255 are",
  `the UTF-8 bytes of the text, ${BYTE.bos} begins a sequence, ${BYTE.eos} ends it, ${BYTE.pad} is padding and ${BYTE.sep} the`,
  'separator after a prompt. `dro chat --model <this directory>` and `dro model generate --model <this',
  'directory> --text …` use it. In Python: `ids = [bos] + list(text.encode("utf-8")) + [sep]`, and',
  '`bytes(i for i in ids if i < 256).decode("utf-8", "replace")` back.',
  '',
].join('\n');

/**
 * The tokenizer of a model given by path (`--model`): its own (tokenizer.json, a GGUF's vocabulary), or for a
 * model directory (config.json) without tokenizer.json the byte tokenizer (a model trained here from scratch,
 * exported with TOKENIZER.md), said on stderr. Checked against the model's vocabulary when given it.
 */
export async function modelPathTokenizer(path: string, modelConfig?: ModelConfig): Promise<Tokenizer> {
  let tokenizer: Tokenizer;
  const isDir = await stat(path).then((s) => s.isDirectory(), () => false);
  if (isDir && existsSync(join(path, 'config.json')) && !existsSync(join(path, 'tokenizer.json'))) {
    tokenizer = new ByteTokenizer();
    console.error(`${path} has no tokenizer.json: using the byte tokenizer (ids 0-255 are UTF-8 bytes), as a model trained here from scratch does`);
  } else {
    tokenizer = await loadModelTokenizer(path);
  }
  if (modelConfig && tokenizer.vocabSize > modelConfig.vocab_size) {
    throw new RunError(`the tokenizer ${tokenizer instanceof ByteTokenizer ? '(the byte tokenizer) ' : ''}has ${tokenizer.vocabSize} ids but the model ${path} has vocab_size ${modelConfig.vocab_size}`);
  }
  return tokenizer;
}

export interface ExportOptions {
  /** Weights in float32 (as trained), or converted to bfloat16 or float16. */
  dtype: ExportDType;
  /** LoRA runs: write the merged full model instead of the PEFT adapter directory. */
  merged: boolean;
}

/** generation_config.json: the base's when it has one, with the token ids the run used. */
function generationConfig(sideFiles: Record<string, Uint8Array | string>, tokenizer: Tokenizer): string {
  const base = sideFiles['generation_config.json'];
  const parsed = base === undefined ? {} : (JSON.parse(typeof base === 'string' ? base : new TextDecoder().decode(base)) as Record<string, unknown>);
  const { bos, eos, pad } = tokenizer.special;
  return JSON.stringify({ ...parsed, ...(bos === undefined ? {} : { bos_token_id: bos }), ...(eos === undefined ? {} : { eos_token_id: eos }), ...(pad === undefined ? {} : { pad_token_id: pad }) }, null, 2) + '\n';
}

/**
 * Writes checkpoint `step` of a run as the new directory `out`, whole or not at all: a Hugging Face model
 * directory (config.json, model.safetensors, generation_config.json, the tokenizer files the run's model has, or
 * a note on the byte tokenizer) and the checkpoint's state.json; for a LoRA run without `merged`, the PEFT
 * adapter directory (adapter_model.safetensors, adapter_config.json) with the same tokenizer files.
 */
export async function exportCheckpointModel(uri: string, runId: string, step: number | 'latest', out: string, options: ExportOptions): Promise<{ step: number; files: string[] }> {
  const run = await readRunCheckpoint(uri, runId, step);
  const tokenizer = await checkpointTokenizer(run);
  const fromModel = run.config.model.path !== null && !(tokenizer instanceof ByteTokenizer) ? await modelSideFiles(run.config.model.path) : {};
  const side: Record<string, Uint8Array | string> = { ...fromModel, 'generation_config.json': generationConfig(fromModel, tokenizer), [STATE_FILE]: JSON.stringify(run.checkpoint.state, null, 2) + '\n' };
  if (tokenizer instanceof ByteTokenizer) side['TOKENIZER.md'] = BYTE_TOKENIZER_NOTE;
  try {
    if (run.config.model.loraRank > 0 && !options.merged) {
      if (options.dtype !== 'float32') throw new RunError('--dtype converts a whole model: a LoRA adapter directory is written as trained (float32); add --merged for a converted full model');
      const files = { [ADAPTER_WEIGHTS_FILE]: run.checkpoint.files[ADAPTER_WEIGHTS_FILE]!, [ADAPTER_CONFIG_FILE]: run.checkpoint.files[ADAPTER_CONFIG_FILE]!, ...side };
      await writeNewDirectory(out, files);
      return { step: run.step, files: Object.keys(files).sort() };
    }
    if (run.config.model.loraRank === 0 && options.merged) throw new RunError(`--merged is for LoRA runs; run ${runId} trains every weight`);
    const written = await writeModelDirectory(out, run.modelConfig, await checkpointParameters(run), side, { dtype: options.dtype });
    return { step: run.step, files: [...written.files].sort() };
  } catch (err) {
    if (err instanceof RunError) throw err;
    throw new RunError((err as Error).message, { cause: err });
  }
}
