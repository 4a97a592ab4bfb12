// Which tensors of a weights file (or of a sharded checkpoint's files) are the model's parameters: every
// name and shape checked against the config before any data is read, with the Hugging Face extras that are
// harmless accepted and everything else refused naming the file and the first tensor that is wrong.
import type { FloatArray } from '../float-arrays.js';
import { EngineInputError } from '../errors.js';
import type { SafetensorsDtype } from '../weights/safetensors.js';
import type { ModelConfig } from './config.js';
import { parameterSpecs, type ParamSpec } from './params.js';

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /** The file holding it, named in errors instead of the checkpoint's source (a shard of a sharded one). */
  file?: string;
}

export interface ParameterPlan {
  /** The parameters to read, in parameterSpecs order. */
  specs: ParamSpec[];
  /** Tensors accepted but not read (rotary inv_freq buffers). */
  ignored: string[];
  /** The file also carries lm_head.weight although the embeddings are tied: it must equal them (checkTiedHead). */
  tiedHead: boolean;
}

export const TIED_HEAD = 'lm_head.weight';
export const EMBEDDINGS = 'model.embed_tokens.weight';
const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * Buffers older transformers versions saved with the weights (model.rotary_emb.inv_freq, or one per layer
 * under self_attn.rotary_emb): they are recomputed from the config, as transformers itself does on load.
 */
const isRotaryBuffer = (name: string): boolean => /^model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$/.test(name);

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Checks a weights file's tensor table against the config and says what to read. Accepted beside the
 * parameters: rotary inv_freq buffers (ignored), and lm_head.weight when tie_word_embeddings is true, which
 * some checkpoints store as a copy of the embeddings (it must then equal them: see checkTiedHead; a
 * different head would make the config's tying silently drop trained weights). An omitted lm_head.weight
 * with tied embeddings is the normal Hugging Face form. Refused, in this order: tensors the config does not
 * use, then in parameter order the first missing, misshaped or non-float parameter.
 */
export function planParameterTensors(tensors: ReadonlyMap<string, TensorInfo>, config: ModelConfig, source: string): ParameterPlan {
  const specs = parameterSpecs(config);
  const used = new Set(specs.map((s) => s.name));
  const ignored: string[] = [];
  let tiedHead = false;
  const extra: string[] = [];
  for (const name of tensors.keys()) {
    if (used.has(name)) continue;
    if (isRotaryBuffer(name)) ignored.push(name);
    else if (name === TIED_HEAD && config.tie_word_embeddings) tiedHead = true;
    else extra.push(name);
  }
  // Weights the config does not use mean the two disagree (e.g. fewer layers): never drop them silently.
  if (extra.length > 0) {
    extra.sort();
    throw new EngineInputError(
      `${tensors.get(extra[0]!)?.file ?? source}: ${extra.length} tensor(s) the model config does not use, e.g. ${extra.slice(0, 3).join(', ')}; does the config (num_hidden_layers ${config.num_hidden_layers}, tie_word_embeddings ${config.tie_word_embeddings}) match the weights?`,
    );
  }
  for (const spec of specs) {
    if (spec.name === TIED_HEAD && !tensors.has(TIED_HEAD)) {
      throw new EngineInputError(`${source}: tensor ${TIED_HEAD} is missing (tie_word_embeddings is false; a checkpoint without an output head ties it to the embeddings: set tie_word_embeddings true)`);
    }
    checkTensorEntry(spec.name, tensors.get(spec.name), spec.shape, source);
  }
  if (tiedHead) {
    const embeddings = specs.find((s) => s.name === EMBEDDINGS)!;
    checkTensorEntry(TIED_HEAD, tensors.get(TIED_HEAD), embeddings.shape, source);
  }
  return { specs, ignored, tiedHead };
}

/** One tensor a model, adapter or optimizer file must hold: present, of `shape`, and a float dtype. */
export function checkTensorEntry(name: string, t: TensorInfo | undefined, shape: readonly number[], source: string): asserts t is TensorInfo {
  if (!t) throw new EngineInputError(`${source}: tensor ${name} is missing`);
  const where = t.file ?? source;
  if (!sameShape(t.shape, shape)) throw new EngineInputError(`${where}: tensor ${name} has shape [${t.shape.join(', ')}], the model needs [${shape.join(', ')}]`);
  // Integers (I32, U8, ...) are not weights: converting them would load nonsense silently.
  if (!FLOAT_DTYPES.has(t.dtype)) throw new EngineInputError(`${where}: tensor ${name} has dtype ${t.dtype}; weights must be a float type (F32, F16, BF16, F64)`);
}

/** Refuses NaN and infinite weights, naming the tensor and the first bad element. */
export function checkFiniteTensor(values: FloatArray, name: string, where: string): void {
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new EngineInputError(`${where}: tensor ${name} holds ${values[bad]} at element ${bad}; weights must be finite`);
}

/** A stored lm_head.weight beside tied embeddings must be their copy, bit for bit after conversion. */
export function checkTiedHead(head: FloatArray, embeddings: FloatArray, where: string): void {
  const differs = head.findIndex((v, i) => v !== embeddings[i]);
  if (differs >= 0) {
    throw new EngineInputError(`${where}: tensor ${TIED_HEAD} differs from ${EMBEDDINGS} at element ${differs} (${head[differs]} vs ${embeddings[differs]}), but tie_word_embeddings is true; set it false to load the separate output head`);
  }
}
