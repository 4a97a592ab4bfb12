// LoRA adapters in PEFT's layout: which tensors exist (lora_A [r, in], lora_B [out, r] under PEFT's
// names), PEFT's default initialisation from keyed draws, the adapted projection in a graph, the merge
// W' = W + (alpha/r)·B·A, and adapter_config.json as PEFT writes and reads it.
import type { LoraTarget } from '../../dro/config.js';
import { LORA_TARGETS } from '../../dro/config.js';
import { uniformStream } from '../../dro/random.js';
import type { DType, Graph, Tensor } from '../onnx/graph.js';
import type { ModelConfig } from './config.js';
import { elementCount, type ParamSpec } from './params.js';

export type { LoraTarget } from '../../dro/config.js';

export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Projections adapted in every layer (PEFT's target_modules). */
  targets: readonly LoraTarget[];
}

/** PEFT's prefix of every adapter tensor: PeftModel.base_model (LoraModel) .model (the transformers model). */
const PEFT_PREFIX = 'base_model.model.';

export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';

export class LoraError extends Error {
  override readonly name = 'LoraError';
}

/** alpha / r (PEFT without use_rslora). */
export const loraScale = (lora: LoraConfig): number => lora.alpha / lora.rank;

export function checkLoraConfig(lora: LoraConfig, source: string): void {
  if (!Number.isSafeInteger(lora.rank) || lora.rank < 1) throw new LoraError(`${source}: rank must be an integer ≥ 1, got ${lora.rank}`);
  if (!Number.isFinite(lora.alpha) || lora.alpha <= 0) throw new LoraError(`${source}: alpha must be a positive number, got ${lora.alpha}`);
  if (lora.targets.length === 0) throw new LoraError(`${source}: target modules must not be empty`);
  for (const t of lora.targets) if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new LoraError(`${source}: target module ${JSON.stringify(t)} is not one of ${LORA_TARGETS.join(', ')}`);
  if (new Set(lora.targets).size !== lora.targets.length) throw new LoraError(`${source}: target modules list one twice (${lora.targets.join(', ')})`);
}

const MODULE_PARENT: Record<LoraTarget, string> = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
};

/** One adapted projection: the base weight it adapts and its two adapter tensors. */
export interface AdapterSite {
  /** The frozen weight, e.g. model.layers.0.self_attn.q_proj.weight ([out, in]). */
  weight: string;
  /** lora_A.weight [r, in], in PEFT's name. */
  a: ParamSpec;
  /** lora_B.weight [out, r], in PEFT's name. */
  b: ParamSpec;
  inFeatures: number;
  outFeatures: number;
}

function projectionShape(config: ModelConfig, target: LoraTarget): { out: number; in: number } {
  const hidden = config.hidden_size;
  const q = config.num_attention_heads * config.head_dim;
  const kv = config.num_key_value_heads * config.head_dim;
  const inter = config.intermediate_size;
  switch (target) {
    case 'q_proj':
      return { out: q, in: hidden };
    case 'k_proj':
    case 'v_proj':
      return { out: kv, in: hidden };
    case 'o_proj':
      return { out: hidden, in: q };
    case 'gate_proj':
    case 'up_proj':
      return { out: inter, in: hidden };
    case 'down_proj':
      return { out: hidden, in: inter };
  }
}

/** Every adapted projection, layer by layer, targets in LORA_TARGETS order (so the order never depends on how the config lists them). */
export function adapterSites(config: ModelConfig, lora: LoraConfig): AdapterSite[] {
  const targets = LORA_TARGETS.filter((t) => lora.targets.includes(t));
  const sites: AdapterSite[] = [];
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    for (const target of targets) {
      const module = `model.layers.${layer}.${MODULE_PARENT[target]}.${target}`;
      const { out, in: inFeatures } = projectionShape(config, target);
      sites.push({
        weight: `${module}.weight`,
        a: { name: `${PEFT_PREFIX}${module}.lora_A.weight`, shape: [lora.rank, inFeatures] },
        b: { name: `${PEFT_PREFIX}${module}.lora_B.weight`, shape: [out, lora.rank] },
        inFeatures,
        outFeatures: out,
      });
    }
  }
  return sites;
}

/** Every adapter tensor (A then B per site), in a fixed order: the trained parameters of a LoRA run. */
export function adapterSpecs(config: ModelConfig, lora: LoraConfig): ParamSpec[] {
  return adapterSites(config, lora).flatMap((s) => [s.a, s.b]);
}

/**
 * PEFT's default init: A ~ kaiming_uniform(a = √5) = uniform(−1/√in, 1/√in), B = 0, so the adapted
 * model starts exactly at the base. Each element of A is keyed by (seed, tensor name, index), like
 * initParameters, so it depends on nothing else.
 */
export function initAdapters(config: ModelConfig, lora: LoraConfig, seed: number): Map<string, Float32Array> {
  const adapters = new Map<string, Float32Array>();
  for (const site of adapterSites(config, lora)) {
    const a = new Float32Array(elementCount(site.a.shape));
    const bound = 1 / Math.sqrt(site.inFeatures);
    const key = uniformStream([seed, site.a.name, 'lora-init']);
    for (let i = 0; i < a.length; i++) a[i] = bound * (2 * key(i) - 1);
    adapters.set(site.a.name, a);
    adapters.set(site.b.name, new Float32Array(elementCount(site.b.shape)));
  }
  return adapters;
}

/** An adapted projection as graph tensors: y = x·Wᵀ + scale · (x·Aᵀ)·Bᵀ. */
export interface GraphAdapter {
  a: Tensor;
  b: Tensor;
  scale: number;
}

/** The adapter tensors as graph inputs (trained, so never baked in), and the adapters by the weight they adapt. */
export function declareAdapters(g: Graph, config: ModelConfig, lora: LoraConfig, dtype: DType): { inputs: Map<string, Tensor>; byWeight: Map<string, GraphAdapter> } {
  const inputs = new Map<string, Tensor>();
  const byWeight = new Map<string, GraphAdapter>();
  const scale = loraScale(lora);
  for (const site of adapterSites(config, lora)) {
    const a = g.input(site.a.name, dtype, site.a.shape);
    const b = g.input(site.b.name, dtype, site.b.shape);
    inputs.set(site.a.name, a);
    inputs.set(site.b.name, b);
    byWeight.set(site.weight, { a, b, scale });
  }
  return { inputs, byWeight };
}

type FloatArray = Float32Array | Float64Array;

/**
 * The merged weights W' = W + scale·B·A of every adapted projection, the other weights as they are (the
 * same arrays: nothing here writes into its inputs). Sums run in float64 in a fixed order, so the result
 * is a pure function of the inputs; W' keeps W's float type.
 */
export function mergeAdapters<T extends FloatArray>(config: ModelConfig, lora: LoraConfig, base: ReadonlyMap<string, T>, adapters: ReadonlyMap<string, FloatArray>): Map<string, T> {
  const merged = new Map(base);
  const scale = loraScale(lora);
  const r = lora.rank;
  for (const site of adapterSites(config, lora)) {
    const w = base.get(site.weight);
    const a = adapters.get(site.a.name);
    const b = adapters.get(site.b.name);
    if (!w) throw new LoraError(`base weight ${site.weight} is missing`);
    if (!a || !b) throw new LoraError(`adapter tensor ${!a ? site.a.name : site.b.name} is missing`);
    const out = site.outFeatures;
    const n = site.inFeatures;
    const result = w.slice() as T;
    const row = new Float64Array(n);
    for (let o = 0; o < out; o++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const bk = b[o * r + k]!;
        if (bk === 0) continue;
        const aRow = k * n;
        for (let i = 0; i < n; i++) row[i]! += bk * a[aRow + i]!;
      }
      for (let i = 0; i < n; i++) result[o * n + i] = w[o * n + i]! + scale * row[i]!;
    }
    merged.set(site.weight, result);
  }
  return merged;
}

/** adapter_config.json as PEFT's LoraConfig.save_pretrained writes it (sorted keys), for an adapter trained here. */
export function adapterConfigJson(lora: LoraConfig, baseModelNameOrPath: string | null): string {
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: lora.alpha,
    lora_dropout: 0.0,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.rank,
    rank_pattern: {},
    revision: null,
    target_modules: LORA_TARGETS.filter((t) => lora.targets.includes(t)),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isEmpty = (v: unknown): boolean => v === undefined || v === null || (isObject(v) && Object.keys(v).length === 0) || (Array.isArray(v) && v.length === 0);

/**
 * The LoRA settings of a PEFT adapter_config.json. Settings that change the math in ways this engine does
 * not implement (rsLoRA or DoRA scaling, per-layer ranks, transposed weights, trained biases, a regex of
 * modules) are refused by name rather than merged wrongly.
 */
export function parseAdapterConfig(raw: unknown, source: string): LoraConfig & { baseModelNameOrPath: string | null } {
  if (!isObject(raw)) throw new LoraError(`${source}: must be a JSON object`);
  const refuse = (field: string, why: string): never => {
    throw new LoraError(`${source}: ${field} is ${JSON.stringify(raw[field])}: ${why}`);
  };
  if (raw.peft_type !== 'LORA') refuse('peft_type', "only 'LORA' adapters are supported");
  if (typeof raw.r !== 'number' || !Number.isSafeInteger(raw.r) || raw.r < 1) refuse('r', 'must be an integer ≥ 1');
  if (typeof raw.lora_alpha !== 'number' || !Number.isFinite(raw.lora_alpha) || raw.lora_alpha <= 0) refuse('lora_alpha', 'must be a positive number');
  if (!Array.isArray(raw.target_modules) || !raw.target_modules.every((t) => typeof t === 'string')) refuse('target_modules', 'must be a list of module names (a regular expression is not supported)');
  const targets = raw.target_modules as string[];
  const unknown = targets.filter((t) => !(LORA_TARGETS as readonly string[]).includes(t));
  if (unknown.length > 0) refuse('target_modules', `${unknown.join(', ')} not one of ${LORA_TARGETS.join(', ')}`);
  if (raw.use_rslora === true) refuse('use_rslora', 'rank-stabilised scaling is not supported');
  if (raw.use_dora === true) refuse('use_dora', 'DoRA is not supported');
  if (raw.fan_in_fan_out === true) refuse('fan_in_fan_out', 'transposed (Conv1D) weights are not supported');
  if (raw.bias !== undefined && raw.bias !== 'none') refuse('bias', "only 'none' is supported");
  for (const field of ['rank_pattern', 'alpha_pattern', 'layers_to_transform', 'modules_to_save', 'layer_replication']) {
    if (!isEmpty(raw[field])) refuse(field, 'must be empty: only one rank and alpha for every adapted module of every layer is supported');
  }
  const base = typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null;
  const lora: LoraConfig = { rank: raw.r as number, alpha: raw.lora_alpha as number, targets: [...new Set(targets)] as LoraTarget[] };
  return { ...lora, baseModelNameOrPath: base };
}
