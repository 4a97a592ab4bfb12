// The whole run configuration as one schema: every field has a default and a one-line description, and
// `parseRunConfig` is the single place a config is validated. Defaults the paper does not give are ours
// (README, "Our choices"): they are marked "(ours)" in the descriptions.
import { z } from 'zod';
import { AGGREGATIONS } from './grpo.js';
import { CONTRASTS, DEFAULT_R3_OPTIONS, WEIGHTINGS } from './r3.js';
import { DEFAULT_DATA_FILTER_OPTIONS } from './data-filter.js';
import { DEFAULT_ADVANTAGE_OPTIONS } from './advantages.js';
import { DEFAULT_GROUP_FILTER_OPTIONS } from './group-filter.js';
import { DEFAULT_GRPO_LOSS_OPTIONS } from './grpo.js';
import { DEFAULT_MAX_ATTEMPTS_PER_STEP } from './attempts.js';

const int = (min: number) => z.number().int().min(min);
const share = () => z.number().min(0).max(1);
const positive = () => z.number().positive();
// Every field of a section has a default, so an absent section is parsed as {} (prefault runs the
// defaults; a plain default would skip them). TypeScript cannot see that through the generic.
const section = <T extends z.ZodRawShape>(shape: T, description: string) =>
  z.object(shape).strict().prefault({} as never).describe(description);

/** Every projection of a Llama-family layer that LoRA can adapt, in the PEFT (Hugging Face module) names. */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];
/** The attention projections, as in the LoRA paper and most PEFT recipes. */
export const DEFAULT_LORA_TARGETS: readonly LoraTarget[] = Object.freeze(['q_proj', 'k_proj', 'v_proj', 'o_proj']);

const noDuplicates = (values: readonly string[], ctx: z.RefinementCtx): void => {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) ctx.addIssue({ code: 'custom', message: `lists '${v}' twice` });
    seen.add(v);
  }
};

/** A tiny Llama-style policy for runs that start from scratch (Hugging Face LlamaConfig names). */
export const DEFAULT_INIT_MODEL: Readonly<Record<string, number | boolean>> = Object.freeze({
  vocab_size: 260,
  hidden_size: 64,
  intermediate_size: 176,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 1024,
  attention_bias: false,
});

/** The open-ended tasks, where ROUGE-1 of the answer against the reference can be the reward (dro.reward 'rouge1'). */
export const ROUGE_REWARD_TASKS: readonly string[] = Object.freeze(['pararev', 'jsonl']);

/** Every field, without the rules between fields (CROSS_FIELD_CHECKS). */
const RunConfigFields = z
  .object({
    seed: int(0).default(0).describe('Run seed: every random draw is keyed by (seed, step, example, sample, purpose)'),
    model: section(
      {
        path: z
          .string()
          .min(1)
          .nullable()
          .default(null)
          .describe('Model directory in the Hugging Face layout (config.json, model.safetensors, tokenizer.json), or a .gguf file (dequantised to float32 when loaded; its tokenizer rebuilt from its metadata); null = initialise a new model from `init`'),
        init: z
          .record(z.string(), z.union([z.number(), z.boolean()]))
          .default({ ...DEFAULT_INIT_MODEL })
          .describe('Architecture of a model initialised from scratch, in Hugging Face LlamaConfig field names (ours: a 2-layer, 64-wide model)'),
        tokenizer: z.enum(['auto', 'byte', 'model']).default('auto').describe("'byte' tokenizer, the model's tokenizer.json ('model'), or 'auto': byte for new models, the model's otherwise"),
        executionProvider: z.enum(['cpu', 'cuda']).default('cpu').describe('ONNX Runtime execution provider; cuda needs the CUDA provider installed'),
        intraOpThreads: int(1).default(2).describe('ONNX Runtime intra-op threads per session (fixed, so results are reproducible)'),
        loraRank: int(0).default(0).describe('LoRA adapter rank r: > 0 freezes the base weights and trains rank-r adapters of model.loraTargets (also on a new model); 0 trains all weights'),
        loraAlpha: positive().default(32).describe('LoRA scaling numerator (scale = alpha / rank)'),
        loraTargets: z
          .array(z.enum(LORA_TARGETS))
          .min(1)
          .superRefine(noDuplicates)
          .default([...DEFAULT_LORA_TARGETS])
          .describe('Projections that get LoRA adapters in every layer (PEFT target_modules, each listed once), when model.loraRank > 0'),
      },
      'The policy: where it comes from and how it runs',
    ),
    data: section(
      {
        task: z
          .enum(['synthetic', 'finqa', 'pararev', 'jsonl'])
          .default('synthetic')
          .describe("Task: prompt format, answer extraction and metrics; 'jsonl' = your own prompt/reference records (data.jsonl)"),
        trainPath: z.string().min(1).nullable().default(null).describe("Training examples file; null = the task's default (synthetic: generated from the seed; jsonl: required)"),
        evalPath: z.string().min(1).nullable().default(null).describe("Held-out examples file; null = the task's default (jsonl: the training file, with a warning)"),
        maxPromptTokens: int(1).default(512).describe('Prompts longer than this are rejected when the data is loaded'),
        maxReferenceTokens: int(1).default(256).describe('References longer than this are rejected when the data is loaded'),
        synthetic: section(
          {
            digits: int(1).max(15).default(2).describe('Synthetic task: digits per operand (ours: 2)'),
            op: z.enum(['+', '*']).default('+').describe("Synthetic task: '+' (n-digit addition) or '*' (n digits times one digit)"),
            fillerWords: int(0).max(1000).default(0).describe('Synthetic task: chain-independent filler words after the answer in the reference outcome'),
            trainCount: int(1).default(512).describe('Synthetic task: generated training examples'),
            evalCount: int(1).default(64).describe('Synthetic task: generated held-out examples (a disjoint stream)'),
          },
          'The generated synthetic arithmetic task (data.task = synthetic)',
        ),
        jsonl: section(
          {
            fields: section(
              {
                prompt: z.string().min(1).default('prompt').describe('Record field holding the prompt'),
                reference: z.string().min(1).default('reference').describe('Record field holding the reference outcome R3 scores'),
                answer: z.string().min(1).default('answer').describe('Record field holding an optional short final answer to check'),
                id: z.string().min(1).default('id').describe("Record field holding an optional id (default: derived from the prompt and reference)"),
              },
              'Which record fields hold what (other fields are kept and ignored)',
            ),
            chat: z
              .union([z.literal('auto'), z.boolean()])
              .default('auto')
              .describe("Put the prompt through the model's chat template: 'auto' = when the tokenizer has one; true needs one; false = the prompt text as is"),
            system: z.string().min(1).nullable().default(null).describe('A system message before each prompt (chat template only); null = none'),
            formatInstruction: z
              .string()
              .nullable()
              .default(null)
              .describe("Text appended to every prompt to state the completion format (reasoning in <think>…</think>, then the answer); null = the built-in tasks' sentence; '' = nothing"),
            answerCheck: z
              .enum(['exact', 'numeric', 'none'])
              .default('exact')
              .describe("How a record's `answer` is checked: 'exact' (whitespace and case normalised), 'numeric' (the completion's last number within data.jsonl.tolerance), 'none'"),
            tolerance: z.number().min(0).default(1e-4).describe("'numeric': relative tolerance |x − answer| ≤ tolerance·|answer| (ours: 1e-4)"),
          },
          'Your own data: JSONL records of prompt and reference, optionally answer and id (data.task = jsonl)',
        ),
      },
      'Training and evaluation data',
    ),
    rollout: section(
      {
        promptsPerStep: int(1).default(4).describe('Prompts per training step (ours)'),
        groupSize: int(1).default(8).describe('G: reasoning chains sampled per prompt (ours)'),
        temperature: z.number().min(0).default(1).describe('Sampling temperature; 0 = greedy'),
        topP: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass'),
        maxNewTokens: int(1).default(256).describe('Token budget per chain; chains that hit it are truncated; also the Dr. GRPO length constant'),
        batchSequences: int(1).default(32).describe('Sequences per engine call when generating and scoring: part of the batch plan, so results never depend on how many workers exist'),
      },
      'Sampling reasoning chains from the policy',
    ),
    dro: section(
      {
        reward: z
          .enum(['r3', 'aggregate', 'correctness', 'rouge1'])
          .default('r3')
          .describe("Reward: R3, the plain sum of reference log-probs ('aggregate'), or a baseline ('correctness', 'rouge1')"),
        r3: section(
          {
            weighting: z.enum(WEIGHTINGS).default(DEFAULT_R3_OPTIONS.weighting).describe('w_Δ: how σ_j becomes a token weight (ours: linear)'),
            delta: z.number().default(DEFAULT_R3_OPTIONS.delta).describe("Δ for 'linear': tokens with σ_j ≤ Δ get no weight (ours: 0)"),
            temperature: positive().default(DEFAULT_R3_OPTIONS.temperature).describe("τ for 'softmax' (ours: 1)"),
            topK: int(1).default(DEFAULT_R3_OPTIONS.topK).describe("Tokens weighted by 'topk' (ours: 8)"),
            contrast: z.enum(CONTRASTS).default(DEFAULT_R3_OPTIONS.contrast).describe("Correction for rescuing reference tokens: 'none', 'masked' chain contrast, certainty 'propagation'"),
            reflectiveQuantile: share().default(DEFAULT_R3_OPTIONS.reflectiveQuantile).describe("'propagation': σ quantile at or above which a token is reflective (ours: 0.9)"),
            gamma: z.number().min(0).default(DEFAULT_R3_OPTIONS.gamma).describe("'propagation': certainty decay γ per token of distance (ours: 0.5)"),
          },
          'The Reasoning Reflection Reward',
        ),
        lengthBeta: z.number().min(0).default(0.5).describe('β_len of the length penalty 1 − β·|ref − ans|/ref (ours: 0.5)'),
        lengthWeight: z.number().min(0).default(0.1).describe('Weight of the length penalty next to the per-token R3 (ours: 0.1)'),
        advantageScale: z.enum(['std', 'none']).default(DEFAULT_ADVANTAGE_OPTIONS.scale).describe("Divide group-centred rewards by their std ('std') or not ('none')"),
        advantageEpsilon: z.number().min(0).default(DEFAULT_ADVANTAGE_OPTIONS.epsilon).describe('ε added to the group std'),
        minRewardStd: z.number().min(0).default(DEFAULT_GROUP_FILTER_OPTIONS.minRewardStd).describe('Groups whose reward std is below this are skipped (ours: 1e-6)'),
        epsilonLow: z.number().min(0).max(1).default(DEFAULT_GRPO_LOSS_OPTIONS.epsilonLow).describe('Lower clip range of the probability ratio'),
        epsilonHigh: z.number().min(0).default(DEFAULT_GRPO_LOSS_OPTIONS.epsilonHigh).describe('Upper clip range of the probability ratio'),
        klBeta: z.number().min(0).default(DEFAULT_GRPO_LOSS_OPTIONS.klBeta).describe('Weight of the KL penalty to the reference policy'),
        aggregation: z.enum(AGGREGATIONS).default(DEFAULT_GRPO_LOSS_OPTIONS.aggregation).describe('Token aggregation of the loss'),
        maskTruncated: z.boolean().default(DEFAULT_GRPO_LOSS_OPTIONS.maskTruncated).describe('Truncated completions contribute no loss'),
      },
      'Rewards, advantages and the GRPO loss',
    ),
    sft: section(
      {
        steps: int(0).default(0).describe('Supervised warm-start optimizer steps before DRO; 0 = no warm start'),
        batchSize: int(1).default(16).describe('Demonstrations per warm-start step'),
        learningRate: positive().default(3e-3).describe('Constant AdamW learning rate of the warm start (ours, for the small models trained here)'),
        demonstrations: z
          .string()
          .min(1)
          .nullable()
          .default(null)
          .describe("JSONL of demonstrations ({\"prompt\", \"completion\"} per line); null = the task's own (synthetic: worked solutions with slips)"),
        slipRate: share().default(0.3).describe("Synthetic demonstrations: share with one realistic slip (so the warm-started policy is imperfect)"),
      },
      'Supervised warm start (SFT) before the DRO loop',
    ),
    optimizer: section(
      {
        learningRate: positive().default(1e-5).describe('Peak AdamW learning rate (ours)'),
        beta1: z.number().min(0).lt(1).default(0.9).describe('AdamW first-moment decay'),
        beta2: z.number().min(0).lt(1).default(0.999).describe('AdamW second-moment decay'),
        epsilon: positive().default(1e-8).describe('AdamW denominator ε'),
        weightDecay: z.number().min(0).default(0).describe('Decoupled weight decay'),
        maxGradNorm: z.number().min(0).default(1).describe('Global gradient-norm clip; 0 = off'),
        updatesPerStep: int(1).default(1).describe('Optimizer updates per batch of rollouts (ratio clipping matters from the second on)'),
      },
      'AdamW',
    ),
    update: section(
      {
        microBatchTokens: z
          .union([z.literal('auto'), int(1)])
          .default('auto')
          .describe(
            "Most tokens (sequences × the longest, padding counted) per micro-batch of an update (at least data.maxPromptTokens + rollout.maxNewTokens: a sequence is never split) and per scoring call (a longer scored sequence runs alone): an update packs its sequences longest first and adds the micro-batches' gradients before each optimizer step, so its memory depends on this and the model, not on the batch; 'auto' = chosen from the model's config (README, Memory), never from the machine, so every worker packs the same way",
          ),
      },
      'How an update runs: micro-batches and gradient accumulation',
    ),
    schedule: section(
      {
        totalSteps: int(1).default(100).describe('Training steps in the run'),
        warmupSteps: int(0).default(0).describe('Linear learning-rate warm-up steps'),
        lrSchedule: z.enum(['constant', 'linear', 'cosine']).default('constant').describe('Learning-rate decay after warm-up'),
        minLrRatio: share().default(0).describe('Final learning rate as a share of the peak, for linear and cosine'),
      },
      'Run length and learning-rate schedule',
    ),
    checkpoint: section(
      {
        store: z.string().min(1).default('runs').describe('Blob store URI: a directory path, file:///path or s3://bucket/prefix'),
        every: int(1).default(10).describe('Steps between committed checkpoints'),
        keepLast: int(1).default(3).describe('Newest checkpoints kept by retention'),
        keepEvery: int(0).default(0).describe('Also keep every checkpoint whose step is a multiple of this; 0 = none'),
      },
      'Checkpoints and retention',
    ),
    evaluation: section(
      {
        every: int(0).default(0).describe('Steps between evaluations during training (a child workflow each, training does not wait); a multiple of checkpoint.every; 0 = off'),
        examples: int(1).default(64).describe('Held-out examples per evaluation'),
        samples: int(1).default(1).describe('Completions per held-out example (n); n > 1 adds pass@k for tasks that have it and needs temperature > 0'),
        temperature: z.number().min(0).default(0).describe('Sampling temperature for evaluation; 0 = greedy'),
        maxNewTokens: int(1).default(256).describe('Token budget per evaluation answer'),
        baseAndFinal: z.boolean().default(true).describe('Evaluate the warm-started base (step 0) and the final checkpoint, so the run reports before/after'),
      },
      'Evaluation of checkpoints',
    ),
    filtering: section(
      {
        enabled: z.boolean().default(true).describe('Run R3-based dynamic data filtering before training and every `every` steps'),
        every: int(1).default(50).describe('K: steps between filtering rounds (ours: 50)'),
        chainsPerPrompt: int(1).default(8).describe('N: chains sampled per candidate prompt (ours: 8)'),
        candidatesPerRound: int(0).default(0).describe('Prompts scored per round, drawn by keyed randomness from the training pool; 0 = the whole pool'),
        worstTokenShare: z.number().gt(0).max(1).default(DEFAULT_DATA_FILTER_OPTIONS.worstTokenShare).describe('ρ: share of worst-ranked reference tokens averaged in stage 1 (ours: 0.1)'),
        maxRank: positive().default(DEFAULT_DATA_FILTER_OPTIONS.maxRank).describe('k: a prompt is too hard when every chain\'s mean worst-token rank is above this (ours: 20)'),
        dropShare: z.number().min(0).lt(1).default(DEFAULT_DATA_FILTER_OPTIONS.dropShare).describe('Share of survivors with the lowest max σ dropped in stage 2 (ours: 0.25)'),
        carryShare: share().default(DEFAULT_DATA_FILTER_OPTIONS.carryShare).describe('Share of the previous training set carried into each round'),
      },
      'Dynamic data filtering',
    ),
    orchestration: section(
      {
        stepsPerExecution: int(1).default(50).describe('Training steps per workflow execution before continue-as-new (keeps histories short)'),
        heartbeatSeconds: positive().default(10).describe('Heartbeat timeout of policy-worker activities: a silent worker is declared dead after this'),
        pinnedStartSeconds: positive().default(10).describe("How long pinned work waits for its policy worker to pick it up before the run pins another"),
        maxAttemptsPerStep: int(1)
          .default(DEFAULT_MAX_ATTEMPTS_PER_STEP)
          .describe('Attempts at one step (the warm start is step 0) before the run fails, naming the step and its last error: each loss of the policy worker or its state while computing the step is one, counted across rewinds and executions, so a worker that dies at the same step every time ends the run instead of looping'),
      },
      'How the run is orchestrated on Temporal',
    ),
  })
  .strict();

export type RunConfig = z.output<typeof RunConfigFields>;

/**
 * The rules between fields, one function each, so that parseRunConfig can run them beside the field
 * errors and leave out a rule whose verdict rests on a value that was itself bad (crossFieldProblems).
 */
const CROSS_FIELD_CHECKS: readonly ((config: RunConfig, ctx: IssueSink) => void)[] = [
  (config, ctx) => {
    if (config.schedule.warmupSteps > config.schedule.totalSteps) {
      ctx.addIssue({ code: 'custom', path: ['schedule', 'warmupSteps'], message: `is ${config.schedule.warmupSteps}, more than schedule.totalSteps (${config.schedule.totalSteps})` });
    }
  },
  (config, ctx) => {
    if (config.model.path === null && config.model.tokenizer === 'model') {
      ctx.addIssue({ code: 'custom', path: ['model', 'tokenizer'], message: "is 'model' but model.path is null: a new model has no tokenizer.json; use 'byte' or 'auto'" });
    }
  },
  (config, ctx) => {
    if (config.sft.steps > 0 && config.sft.demonstrations === null && config.data.task !== 'synthetic') {
      ctx.addIssue({ code: 'custom', path: ['sft', 'demonstrations'], message: `is null but task ${config.data.task} has no built-in demonstrations: give a JSONL file or set sft.steps to 0` });
    }
  },
  (config, ctx) => {
    if (config.data.task === 'synthetic' && (config.data.trainPath !== null || config.data.evalPath !== null)) {
      ctx.addIssue({ code: 'custom', path: ['data', config.data.trainPath !== null ? 'trainPath' : 'evalPath'], message: 'must be null for the synthetic task: its examples are generated (see data.synthetic)' });
    }
  },
  (config, ctx) => {
    if (config.evaluation.samples > 1 && config.evaluation.temperature === 0) {
      ctx.addIssue({ code: 'custom', path: ['evaluation', 'samples'], message: `is ${config.evaluation.samples} but evaluation.temperature is 0: greedy samples are all the same; raise the temperature or use 1` });
    }
  },
  (config, ctx) => {
    if (config.evaluation.every % config.checkpoint.every !== 0) {
      ctx.addIssue({ code: 'custom', path: ['evaluation', 'every'], message: `is ${config.evaluation.every}, not a multiple of checkpoint.every (${config.checkpoint.every}): an evaluation needs a checkpoint at its step` });
    }
  },
  (config, ctx) => {
    const longest = longestTrainedSequence(config);
    if (config.update.microBatchTokens !== 'auto' && config.update.microBatchTokens < longest) {
      ctx.addIssue({ code: 'custom', path: ['update', 'microBatchTokens'], message: `is ${config.update.microBatchTokens}, less than the longest sequence an update may train (data.maxPromptTokens + rollout.maxNewTokens = ${longest}): a sequence is never split` });
    }
  },
  (config, ctx) => {
    if (config.data.task === 'jsonl' && config.data.trainPath === null) {
      ctx.addIssue({ code: 'custom', path: ['data', 'trainPath'], message: 'is null but data.task is jsonl: give the JSONL file of your training records' });
    }
  },
  (config, ctx) => {
    if (config.dro.reward === 'correctness' && config.data.task === 'jsonl' && config.data.jsonl.answerCheck === 'none') {
      ctx.addIssue({ code: 'custom', path: ['dro', 'reward'], message: "is 'correctness' but data.jsonl.answerCheck is 'none': nothing checks an answer" });
    }
  },
  (config, ctx) => {
    if (config.dro.reward === 'rouge1' && !ROUGE_REWARD_TASKS.includes(config.data.task)) {
      ctx.addIssue({ code: 'custom', path: ['dro', 'reward'], message: `is 'rouge1', which is for open-ended tasks (${ROUGE_REWARD_TASKS.join(', ')}), not ${config.data.task}` });
    }
  },
  (config, ctx) => {
    if (config.dro.reward === 'correctness' && config.data.task === 'pararev') {
      ctx.addIssue({ code: 'custom', path: ['dro', 'reward'], message: "'correctness' needs short verifiable answers; ParaRev is open-ended (use 'r3', 'aggregate' or 'rouge1')" });
    }
  },
];

export const RunConfigSchema = RunConfigFields.superRefine((config, ctx) => {
  for (const check of CROSS_FIELD_CHECKS) check(config, ctx);
});

/** The longest sequence a GRPO update may train: a prompt and a chain. */
export const longestTrainedSequence = (config: RunConfig): number => config.data.maxPromptTokens + config.rollout.maxNewTokens;
export type RunConfigInput = z.input<typeof RunConfigSchema>;

export class RunConfigError extends Error {
  override readonly name = 'RunConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid run configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const MAX_LISTED = 20;

/**
 * Validates a config (parsed YAML or JSON) and fills every default; throws RunConfigError naming every
 * bad field and every broken rule between fields at once, each with the value it got.
 */
export function parseRunConfig(input: unknown): RunConfig {
  const given = input ?? {};
  const fields = RunConfigFields.safeParse(given);
  const problems = fields.success ? [] : fields.error.issues.map((issue) => describeIssue(issue, given));
  const checked = fields.success ? { config: fields.data, bad: [] } : standIn(given, fields.error.issues);
  if (checked) problems.push(...crossFieldProblems(checked.config, checked.bad));
  if (fields.success && problems.length === 0) return fields.data;
  throw new RunConfigError(problems.length > MAX_LISTED ? [...problems.slice(0, MAX_LISTED), `and ${problems.length - MAX_LISTED} more problems`] : problems);
}

/** What the rules between fields report of them, as `path: message`. */
interface IssueSink {
  addIssue(issue: { code: 'custom'; path: string[]; message: string }): void;
}

/**
 * The config with every bad value taken out (its default stands in) and every unknown key dropped, and
 * the bad values' paths; undefined when nothing can stand in (the config is not an object at all). zod
 * runs no refinement once a field fails, yet a person fixing a file wants the problems between fields
 * in the same error, so the rules run on this stand-in.
 */
function standIn(given: unknown, issues: readonly z.core.$ZodIssue[]): { config: RunConfig; bad: string[] } | undefined {
  let value = given;
  const bad: string[] = [];
  // Stray keys first, the outermost first: every later copy is then of objects with known keys only.
  const depth = (issue: z.core.$ZodIssue): number => (issue.code === 'unrecognized_keys' ? issue.path.length : Infinity);
  for (const issue of [...issues].sort((a, b) => depth(a) - depth(b))) {
    if (issue.code === 'unrecognized_keys') {
      value = without(value, issue.path, childKeys(issue.path.join('.')) ?? []);
      continue;
    }
    // A bad entry of a list stands for the whole list: a list with a hole is no default.
    const cut = issue.path.findIndex((key) => typeof key !== 'string');
    const path = (cut < 0 ? issue.path : issue.path.slice(0, cut)) as string[];
    if (path.length === 0) return undefined;
    bad.push(path.join('.'));
    value = without(value, path);
  }
  const again = RunConfigFields.safeParse(value);
  return again.success ? { config: again.data, bad } : undefined;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * `value` without the key at `path` (with `known`: the object at `path` with only those of its keys),
 * copying only what changes; a file of 500k stray keys costs a look at the few known ones.
 */
function without(value: unknown, path: readonly PropertyKey[], known?: readonly string[]): unknown {
  const [head, ...rest] = path;
  // Gone already: a list with two bad entries is taken out once.
  if (!isPlainObject(value) || (head !== undefined && (typeof head !== 'string' || !Object.hasOwn(value, head)))) return value;
  if (head === undefined) return known ? Object.fromEntries(known.filter((key) => Object.hasOwn(value, key)).map((key) => [key, value[key]])) : value;
  const copy = { ...value };
  if (rest.length === 0 && !known) delete copy[head];
  // defineProperty: a plain assignment to a key named __proto__ would set the prototype instead.
  else Object.defineProperty(copy, head, { value: without(value[head], rest, known), enumerable: true, writable: true, configurable: true });
  return copy;
}

/**
 * The problems the rules between fields find in `config`. A rule that read a value at or under a `bad`
 * path is left out: what it says would be about a default standing in, not about the config given.
 */
function crossFieldProblems(config: RunConfig, bad: readonly string[]): string[] {
  const problems: string[] = [];
  for (const check of CROSS_FIELD_CHECKS) {
    const reads: string[] = [];
    const found: string[] = [];
    check(tracked(config, '', reads), { addIssue: (issue) => found.push(`${issue.path.join('.')}: ${issue.message}`) });
    const onStandIn = reads.some((read) => bad.some((b) => read === b || read.startsWith(`${b}.`) || b.startsWith(`${read}.`)));
    if (!onStandIn) problems.push(...found);
  }
  return problems;
}

/** `target` as it is, noting in `reads` the dotted path of every value read that is not an object. */
function tracked<T extends object>(target: T, path: string, reads: string[]): T {
  return new Proxy(target, {
    get(object, key, receiver) {
      const value: unknown = Reflect.get(object, key, receiver);
      const at = path ? `${path}.${String(key)}` : String(key);
      if (isPlainObject(value)) return tracked(value, at, reads);
      reads.push(at);
      return value;
    },
  });
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const where = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    // A file of 500k stray keys must not make a megabyte error: the first few, and how many more.
    const shown = issue.keys.slice(0, MAX_LISTED).map((key) => `${where ? `${where}.` : ''}${key.length > 80 ? `${key.slice(0, 80)}…` : key}: unknown field${didYouMean(where, key)}`);
    if (issue.keys.length > MAX_LISTED) shown.push(`and ${issue.keys.length - MAX_LISTED} more unknown fields${where ? ` in ${where}` : ''}`);
    return shown.join('; ');
  }
  const given = valueAt(input, issue.path);
  // The rules' own messages already say what they found.
  const got = issue.code === 'custom' || !given ? '' : `, got ${shown(given.value)}`;
  return `${where || '(config)'}: ${mustBe(issue, where)}${got}`;
}

/** What the field must be, in words: "must be a whole number", "must be one of 'cpu' | 'cuda'". */
function mustBe(issue: z.core.$ZodIssue, where: string): string {
  const nullable = fieldDoc(where)?.allowed.endsWith('| null') ?? false;
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}${nullable ? ' or null' : ''}`;
    case 'too_small':
    case 'too_big': {
      const [bound, least] = issue.code === 'too_small' ? [issue.minimum, true] : [issue.maximum, false];
      if (least && bound === 1 && issue.origin === 'string') return `must not be empty${nullable ? ' (null for none)' : ''}`;
      // Sizes of lists and texts in words; numbers as the bound the docs print ("≥ 1", "< 1").
      const unit = issue.origin === 'array' ? (bound === 1 ? 'entry' : 'entries') : issue.origin === 'string' ? 'characters' : undefined;
      return unit ? `must have ${least ? 'at least' : 'at most'} ${bound} ${unit}` : `must be ${least ? (issue.inclusive ? '≥' : '>') : issue.inclusive ? '≤' : '<'} ${bound}`;
    }
    case 'invalid_value':
      return `must be one of ${issue.values.map(literal).join(' | ')}`;
    case 'invalid_union': {
      const allowed = fieldDoc(where)?.allowed ?? [...new Set(issue.errors.flat().flatMap((e) => (e.code === 'invalid_type' ? [TYPE_NAMES[e.expected] ?? e.expected] : [])))].join(' or ');
      return allowed ? `must be ${allowed}` : issue.message;
    }
    default:
      return issue.message;
  }
}

const TYPE_NAMES: Partial<Record<string, string>> = {
  int: 'a whole number',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object (a section of fields)',
  array: 'a list',
  null: 'null',
};

const literal = (value: unknown): string => (typeof value === 'string' ? `'${value}'` : String(value));

/** The value at `path` of what was given, if it is there (a default zod filled in is not). */
function valueAt(input: unknown, path: readonly PropertyKey[]): { value: unknown } | undefined {
  return path.reduce<{ value: unknown } | undefined>(
    (at, key) => (at && at.value !== null && typeof at.value === 'object' && typeof key !== 'symbol' && Object.hasOwn(at.value, key) ? { value: (at.value as Record<PropertyKey, unknown>)[key] } : undefined),
    { value: input },
  );
}

/** A value as it goes into a message: JSON, cut short (a bad section may be large). */
function shown(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'number' || typeof value === 'bigint' ? String(value) : (JSON.stringify(value) ?? typeof value);
  } catch {
    // A YAML alias can make a list that holds itself.
    text = `a ${Array.isArray(value) ? 'list' : typeof value} that contains itself`;
  }
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** " (did you mean `learningRate`?)" for a key close to a field of its section, or named like a field elsewhere; "" for none. */
function didYouMean(section: string, key: string): string {
  const near = nearest(key, childKeys(section) ?? []);
  if (near) return ` (did you mean \`${near}\`?)`;
  const elsewhere = [...knownPaths()].filter((path) => path.slice(path.lastIndexOf('.') + 1).toLowerCase() === key.toLowerCase());
  return elsewhere.length > 0 ? ` (did you mean ${elsewhere.slice(0, 3).map((p) => `\`${p}\``).join(' or ')}?)` : '';
}

/** Of `candidates`, the one closest to `key` by edit distance, if close enough to be a slip (or equal but for case). */
function nearest(key: string, candidates: readonly string[]): string | undefined {
  if (key.length > 80) return undefined;
  const limit = Math.min(2, Math.max(1, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/** Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

let docsCache: ReadonlyMap<string, ConfigFieldDoc> | undefined;
/** The field docs by path, made once (the JSON schema walk is not free, and errors ask often). */
function fieldDocsByPath(): ReadonlyMap<string, ConfigFieldDoc> {
  docsCache ??= new Map(runConfigFieldDocs().map((doc) => [doc.path, doc]));
  return docsCache;
}
const fieldDoc = (path: string): ConfigFieldDoc | undefined => fieldDocsByPath().get(path);

let pathsCache: ReadonlySet<string> | undefined;
/** Every field and section path ("optimizer", "optimizer.learningRate", ...). */
function knownPaths(): ReadonlySet<string> {
  if (pathsCache) return pathsCache;
  const paths = new Set<string>();
  for (const path of fieldDocsByPath().keys()) {
    const parts = path.split('.');
    for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join('.'));
  }
  pathsCache = paths;
  return paths;
}

/** The keys of the section at `section` ("" = the top level), or undefined where that is no section. */
function childKeys(section: string): string[] | undefined {
  if (section !== '' && (fieldDocsByPath().has(section) || !knownPaths().has(section))) return undefined;
  const prefix = section === '' ? '' : `${section}.`;
  const keys = new Set<string>();
  for (const path of knownPaths()) if (path.startsWith(prefix)) keys.add(path.slice(prefix.length).split('.')[0]!);
  return [...keys];
}

/**
 * Why the dotted `path` names no field or section of the run config (the nearest one it may mean
 * included), or undefined when it does. Keys under a free-form object field (model.init) are fields.
 */
export function unknownFieldPath(path: string): string | undefined {
  const parts = path.split('.');
  for (let i = 0; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('.');
    if (fieldDoc(parent)?.allowed === 'object') return undefined;
    const keys = childKeys(parent);
    if (!keys) return `${parent} is a single field, not a section: ${path} names nothing`;
    if (keys.includes(parts[i]!)) continue;
    const near = nearest(parts[i]!, keys);
    const rest = parts.slice(i + 1);
    const guesses = near
      ? [[...parts.slice(0, i), near, ...rest].join('.')]
      : [...knownPaths()].filter((p) => p.slice(p.lastIndexOf('.') + 1).toLowerCase() === parts[i]!.toLowerCase()).map((p) => [p, ...rest].join('.'));
    return `unknown field ${path}${guesses.length > 0 ? ` (did you mean ${guesses.slice(0, 3).map((g) => `\`${g}\``).join(' or ')}?)` : ''}`;
  }
  return undefined;
}

/** Canonical JSON (keys sorted at every level): equal configs give equal text, so their hashes agree. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The fields whose values differ between two configs, as sorted dotted paths (a field one side lacks differs). */
export function configDifferences(a: unknown, b: unknown, path = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => configDifferences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return canonicalJson(a) === canonicalJson(b) ? [] : [path || '(config)'];
}

export interface ConfigFieldDoc {
  /** Dotted path, e.g. "dro.r3.weighting". */
  path: string;
  /** JSON of the default value. */
  default: string;
  /** Allowed values or range, e.g. "'cpu' | 'cuda'" or "integer ≥ 1". */
  allowed: string;
  description: string;
}

interface JsonSchemaNode {
  type?: string | string[];
  properties?: Record<string, JsonSchemaNode>;
  additionalProperties?: unknown;
  default?: unknown;
  description?: string;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchemaNode[];
  items?: JsonSchemaNode;
  minItems?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

/** Every leaf field of the run config with its default, allowed values and description (for docs and --help). */
export function runConfigFieldDocs(): ConfigFieldDoc[] {
  const schema = z.toJSONSchema(RunConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const out: ConfigFieldDoc[] = [];
  const walk = (node: JsonSchemaNode, path: string[]): void => {
    if (node.type === 'object' && node.properties) {
      for (const [key, child] of Object.entries(node.properties)) walk(child, [...path, key]);
      return;
    }
    out.push({ path: path.join('.'), default: JSON.stringify(node.default), allowed: allowedValues(node), description: node.description ?? '' });
  };
  walk(schema, []);
  return out;
}

function allowedValues(node: JsonSchemaNode): string {
  if (node.anyOf) return node.anyOf.map(allowedValues).join(' | ');
  const literal = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));
  if (node.enum) return node.enum.map(literal).join(' | ');
  if (node.const !== undefined) return literal(node.const);
  if (Array.isArray(node.type)) return node.type.map((type) => allowedValues({ ...node, type })).join(' | ');
  if (node.type === 'null') return 'null';
  if (node.type === 'object') return 'object';
  if (node.type === 'array' && node.items) return `list of ${allowedValues(node.items)}${node.minItems ? ` (at least ${node.minItems})` : ''}`;
  const kind = node.type === 'integer' ? 'integer' : node.type === 'number' ? 'number' : String(node.type);
  const bounds: string[] = [];
  if (node.minimum !== undefined && node.minimum > -Number.MAX_SAFE_INTEGER) bounds.push(`≥ ${node.minimum}`);
  if (node.exclusiveMinimum !== undefined) bounds.push(`> ${node.exclusiveMinimum}`);
  if (node.maximum !== undefined && node.maximum < Number.MAX_SAFE_INTEGER) bounds.push(`≤ ${node.maximum}`);
  if (node.exclusiveMaximum !== undefined) bounds.push(`< ${node.exclusiveMaximum}`);
  return [kind, ...bounds].join(' ');
}

/** The config reference as a Markdown table (README section "Run configuration"). */
export function runConfigMarkdownTable(): string {
  const rows = runConfigFieldDocs().map((f) => `| \`${f.path}\` | \`${f.default}\` | ${f.allowed.replace(/\|/g, '\\|')} | ${f.description.replace(/\|/g, '\\|')} |`);
  return ['| field | default | allowed | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
