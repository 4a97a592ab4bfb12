// A run's data as the activities see it: the task, its training and held-out examples, the tokenizer,
// and the one place that turns examples and completions into token ids (prompt, chain context,
// reference outcome), so generation, scoring, training and evaluation all agree.
import type { RunConfig } from '../dro/config.js';
import { loadDemonstrations } from '../datasets/demonstrations.js';
import { finqaTask } from '../datasets/finqa.js';
import { jsonlTask } from '../datasets/jsonl-task.js';
import { pararevSource, pararevTask } from '../datasets/pararev.js';
import { sharedDatasetFile } from '../datasets/paths.js';
import { syntheticExample, syntheticTask } from '../datasets/synthetic.js';
import { DatasetError, THINK_CLOSE, THINK_OPEN, type Example, type SkippedRecord, type Task, type TaskSource } from '../datasets/task.js';
import { ByteTokenizer, loadModelConfig, loadModelTokenizer, parseModelConfig, type ChatMessage, type ModelConfig, type Tokenizer } from '../engine/index.js';
import { failure } from './errors.js';

export interface RunData {
  task: Task;
  train: Map<string, Example>;
  eval: Example[];
  /** Records dropped at load time (bad records, or longer than data.maxPromptTokens / maxReferenceTokens). */
  skipped: SkippedRecord[];
  tokenizer: Tokenizer;
  modelConfig: ModelConfig;
  eos: number;
  promptIds(example: Example): number[];
  /** A prompt's text as the policy sees it (through the chat template where the tokenizer has one). */
  promptTextIds(text: string): number[];
  referenceIds(example: Example): number[];
  /** The ids the reference outcome is teacher-forced after: the prompt, the chain through </think>, a space. */
  chainContextIds(promptIds: readonly number[], chainText: string): number[];
}

/** The chain with the reasoning removed, for the masked-chain contrast: log π(y_j | q, y_<j). */
export const MASKED_CHAIN = `${THINK_OPEN}${THINK_CLOSE}`;

const cache = new Map<string, Promise<RunData>>();

/** The run's data, loaded once per config hash and worker process. */
export function runData(config: RunConfig, configHash: string): Promise<RunData> {
  let data = cache.get(configHash);
  if (!data) {
    data = loadRunData(config);
    cache.set(configHash, data);
    data.catch(() => cache.delete(configHash));
  }
  return data;
}

async function modelConfigOf(config: RunConfig): Promise<ModelConfig> {
  if (config.model.path === null) {
    try {
      return parseModelConfig({ model_type: 'llama', ...config.model.init }, 'model.init');
    } catch (err) {
      throw failure('InvalidConfig', (err as Error).message, err);
    }
  }
  try {
    return await loadModelConfig(config.model.path);
  } catch (err) {
    throw failure('InvalidConfig', `model.path: ${(err as Error).message}`, err);
  }
}

/** The task a config names, with its options: one place, for the workers, the data check and the CLI. */
export function taskOf(config: RunConfig): Task {
  switch (config.data.task) {
    case 'synthetic':
      return syntheticTask;
    case 'finqa':
      return finqaTask;
    case 'pararev':
      return pararevTask;
    case 'jsonl': {
      const j = config.data.jsonl;
      return jsonlTask({ fields: j.fields, formatInstruction: j.formatInstruction, answerCheck: j.answerCheck, tolerance: j.tolerance });
    }
  }
}

interface LoadedExamples {
  task: Task;
  train: Example[];
  eval: Example[];
  skipped: SkippedRecord[];
  /** What each set was read from, for reports. */
  trainFrom: string;
  evalFrom: string;
}

async function loadExamples(config: RunConfig): Promise<LoadedExamples> {
  const { data } = config;
  const task = taskOf(config);
  if (data.task === 'synthetic') {
    const s = data.synthetic;
    const train = Array.from({ length: s.trainCount }, (_, i) => syntheticExample({ seed: config.seed, digits: s.digits, op: s.op, fillerWords: s.fillerWords }, i));
    // Held-out problems come from another stream (negative seeds, which no run config can have) and never
    // repeat a training problem.
    const seen = new Set(train.map((e) => `${e.a}${e.op}${e.b}`));
    const held: Example[] = [];
    for (let i = 0; held.length < s.evalCount && i < s.evalCount * 100; i++) {
      const e = syntheticExample({ seed: -1 - config.seed, digits: s.digits, op: s.op, fillerWords: s.fillerWords }, i);
      if (seen.has(`${e.a}${e.op}${e.b}`)) continue;
      seen.add(`${e.a}${e.op}${e.b}`);
      held.push(e);
    }
    return { task, train, eval: held, skipped: [], trainFrom: 'generated (data.synthetic)', evalFrom: 'generated (data.synthetic, a disjoint stream)' };
  }
  const file = (path: string): TaskSource => ({ kind: 'file', path });
  const defaults: { train: TaskSource; eval: TaskSource } | undefined =
    data.task === 'finqa'
      ? { train: file(sharedDatasetFile('finqa', 'train_100.json').path), eval: file(sharedDatasetFile('finqa', 'dev_200.json').path) }
      : data.task === 'pararev'
        ? { train: pararevSource(), eval: pararevSource() }
        : undefined;
  const trainSource = data.trainPath === null ? defaults?.train : file(data.trainPath);
  // The config check refuses a jsonl task without trainPath; a config that skipped it fails here, not later.
  if (!trainSource) throw failure('InvalidConfig', `data.trainPath: task ${data.task} has no default training file`);
  const evalSource = data.evalPath === null ? defaults?.eval : file(data.evalPath);
  const from = (source: TaskSource): string => (source.kind === 'file' ? source.path : source.kind);
  try {
    const train = await task.load(trainSource);
    // A jsonl task without evalPath evaluates on its training records (the data check warns).
    const held = evalSource ? await task.load(evalSource) : { examples: train.examples, skipped: [] };
    return { task, train: train.examples, eval: held.examples, skipped: [...train.skipped, ...held.skipped], trainFrom: from(trainSource), evalFrom: evalSource ? from(evalSource) : `${from(trainSource)} (no data.evalPath: the training records)` };
  } catch (err) {
    throw failure('InvalidData', err instanceof DatasetError ? err.message : `data: ${(err as Error).message}`, err);
  }
}

/** Whether prompts go through the chat template: data.jsonl.chat for the jsonl task, else whenever the tokenizer has one. */
export function usesChatTemplate(config: RunConfig, tokenizer: Tokenizer): boolean {
  if (tokenizer instanceof ByteTokenizer || !tokenizer.applyChatTemplate) {
    if (config.data.task === 'jsonl' && config.data.jsonl.chat === true) throw failure('InvalidConfig', "data.jsonl.chat is true but the model's tokenizer has no chat template; set it to 'auto' or false");
    return false;
  }
  return config.data.task !== 'jsonl' || config.data.jsonl.chat !== false;
}

/** The tokenizer a run uses: the byte tokenizer for a new model (or when asked), else the model's. */
export async function runTokenizer(config: RunConfig): Promise<Tokenizer> {
  const useByte = config.model.tokenizer === 'byte' || (config.model.tokenizer === 'auto' && config.model.path === null);
  try {
    return useByte ? new ByteTokenizer() : await loadModelTokenizer(config.model.path!);
  } catch (err) {
    throw failure('InvalidConfig', `model.tokenizer: ${(err as Error).message}`, err);
  }
}

/** The model's config and the run's tokenizer, checked against each other. */
async function modelAndTokenizer(config: RunConfig): Promise<{ modelConfig: ModelConfig; tokenizer: Tokenizer; eos: number }> {
  const modelConfig = await modelConfigOf(config);
  const tokenizer = await runTokenizer(config);
  if (tokenizer.vocabSize > modelConfig.vocab_size) {
    throw failure('InvalidConfig', `model: the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab_size is ${modelConfig.vocab_size}`);
  }
  const eos = tokenizer.special.eos;
  if (eos === undefined) throw failure('InvalidConfig', 'model.tokenizer: the tokenizer has no end-of-sequence token, so completions could never end');
  return { modelConfig, tokenizer, eos };
}

/** The system message a run's prompts carry where they go through the chat template (data.jsonl.system). */
export function runSystemMessage(config: RunConfig): string | null {
  return config.data.task === 'jsonl' ? config.data.jsonl.system : null;
}

/**
 * A prompt's ids as the policy sees them. With `chat`, the whole conversation (system, user and assistant
 * messages) through the tokenizer's chat template, the assistant prompt after it; otherwise the last
 * message alone, between <bos> and <sep> for the byte tokenizer, with the tokenizer's own special tokens
 * for another. A run's prompts and `dro chat` both come here, so a chat's first turn is a run's prompt.
 */
export function encodeChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: { chat: boolean }): number[] {
  const last = messages.at(-1);
  if (last?.role !== 'user') throw new Error('a prompt ends with a user message');
  if (tokenizer instanceof ByteTokenizer) return [tokenizer.special.bos, ...tokenizer.encode(last.content), tokenizer.special.sep];
  if (options.chat) {
    if (!tokenizer.applyChatTemplate) throw new Error('the tokenizer has no chat template');
    return tokenizer.encode(tokenizer.applyChatTemplate([...messages], { addGenerationPrompt: true }));
  }
  return tokenizer.encode(last.content, { addSpecialTokens: true });
}

interface PreparedData extends LoadedExamples {
  tokenizer: Tokenizer;
  modelConfig: ModelConfig;
  eos: number;
  chat: boolean;
  promptTextIds: (text: string) => number[];
  promptIds: (example: Example) => number[];
  referenceIds: (example: Example) => number[];
  /** Token lengths of the usable examples of each set, in load order. */
  lengths: { train: { prompt: number[]; reference: number[] }; eval: { prompt: number[]; reference: number[] } };
}

/**
 * Loads and tokenizes the run's data, once for the workers and the data check alike: records that cannot be
 * used (bad records, prompts or references over the token budgets, empty references) are left out and
 * reported with their file and line where known.
 */
async function prepareData(config: RunConfig): Promise<PreparedData> {
  const { modelConfig, tokenizer, eos } = await modelAndTokenizer(config);
  const chat = usesChatTemplate(config, tokenizer);
  const loaded = await loadExamples(config);
  const { task, skipped } = loaded;
  const system = runSystemMessage(config);

  const promptTextIds = (text: string): number[] => encodeChat(tokenizer, [...(system === null ? [] : [{ role: 'system', content: system }]), { role: 'user', content: text }], { chat });
  const promptIds = (example: Example): number[] => promptTextIds(task.formatPrompt(example));
  const referenceIds = (example: Example): number[] => tokenizer.encode(task.referenceOutcome(example));

  // Examples too long for the configured budgets are dropped here, once, and reported.
  const keep = (examples: Example[], from: string) => {
    const kept: Example[] = [];
    const lengths = { prompt: [] as number[], reference: [] as number[] };
    for (const example of examples) {
      const p = promptIds(example).length;
      const r = referenceIds(example).length;
      const where = { file: example.origin?.file ?? from, ...(example.origin ? { line: example.origin.line } : {}), recordId: example.id };
      if (p > config.data.maxPromptTokens) skipped.push({ ...where, field: 'prompt', message: `prompt has ${p} tokens, more than data.maxPromptTokens ${config.data.maxPromptTokens}` });
      else if (r > config.data.maxReferenceTokens) skipped.push({ ...where, field: 'reference', message: `reference has ${r} tokens, more than data.maxReferenceTokens ${config.data.maxReferenceTokens}` });
      else if (r === 0) skipped.push({ ...where, field: 'reference', message: 'reference outcome is empty' });
      else {
        kept.push(example);
        lengths.prompt.push(p);
        lengths.reference.push(r);
      }
    }
    return { kept, lengths };
  };
  const train = keep(loaded.train, loaded.trainFrom);
  // Without data.evalPath the jsonl task evaluates its training records: their problems are reported once.
  const sameFile = loaded.eval === loaded.train;
  const held = sameFile ? train : keep(loaded.eval, loaded.evalFrom);
  return { ...loaded, train: train.kept, eval: held.kept, tokenizer, modelConfig, eos, chat, promptTextIds, promptIds, referenceIds, lengths: { train: train.lengths, eval: held.lengths } };
}

/** The first few problems as lines `file:line (id): message`. */
export function formatProblems(problems: readonly SkippedRecord[], limit = 20): string[] {
  const lines = problems.slice(0, limit).map((s) => `${s.file}${s.line === undefined ? '' : `:${s.line}`}${s.recordId === undefined || s.line !== undefined ? '' : ` (${s.recordId})`}: ${s.message}`);
  if (problems.length > limit) lines.push(`… and ${problems.length - limit} more`);
  return lines;
}

async function loadRunData(config: RunConfig): Promise<RunData> {
  const prepared = await prepareData(config);
  const { task, train, skipped, tokenizer } = prepared;
  // Your own data is checked before a run starts (dro train); if the file changed since, the run stops here
  // rather than training on a part of it.
  if (config.data.task === 'jsonl' && skipped.length > 0) throw failure('InvalidData', `data: ${skipped.length} bad record(s):\n${formatProblems(skipped).join('\n')}`);
  if (train.length === 0) throw failure('InvalidData', `data: no usable training examples (${skipped.length} skipped; first: ${skipped[0]?.message ?? 'none loaded'})`);
  const trainMap = new Map<string, Example>();
  for (const e of train) {
    if (trainMap.has(e.id)) throw failure('InvalidData', `data: training example id ${e.id} appears twice`);
    trainMap.set(e.id, e);
  }
  return {
    task,
    train: trainMap,
    eval: prepared.eval,
    skipped,
    tokenizer,
    modelConfig: prepared.modelConfig,
    eos: prepared.eos,
    promptIds: prepared.promptIds,
    promptTextIds: prepared.promptTextIds,
    referenceIds: prepared.referenceIds,
    chainContextIds: (prompt, chainText) => [...prompt, ...tokenizer.encode(`${chainText} `)],
  };
}

/** Token-length percentiles of one part of a set's records. */
export interface LengthSummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface DataCheck {
  task: string;
  tokenizer: string;
  /** Whether prompts go through the model's chat template. */
  chat: boolean;
  train: { from: string; usable: number; prompt?: LengthSummary; reference?: LengthSummary };
  eval: { from: string; usable: number; prompt?: LengthSummary; reference?: LengthSummary };
  /** Training records with an answer the run checks (undefined when the task checks none or has no answers field). */
  answers?: { checked: number; of: number; check: string };
  /** Demonstrations of the warm start, when sft.steps > 0 and a file is given. */
  demonstrations?: { from: string; usable: number };
  warnings: string[];
  problems: SkippedRecord[];
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function summarise(values: readonly number[]): LengthSummary | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1]! };
}

/**
 * Everything about a run's data that can be known before it starts, through the same loading and tokenizing
 * the workers do: counts, token lengths, and every record that could not be used, by file and line. Throws
 * (with the field named) only for what stops the check itself: an unreadable model, tokenizer or file.
 */
export async function checkRunData(config: RunConfig): Promise<DataCheck> {
  const prepared = await prepareData(config);
  const problems = [...prepared.skipped];
  const warnings: string[] = [];
  if (config.data.task === 'jsonl' && config.data.evalPath === null) warnings.push('no data.evalPath: evaluations score the training records, which says little about held-out quality');
  let answers: DataCheck['answers'];
  if (config.data.task === 'jsonl') {
    const withAnswer = prepared.train.filter((e) => e.answer !== undefined).length;
    const check = config.data.jsonl.answerCheck;
    answers = { checked: check === 'none' ? 0 : withAnswer, of: prepared.train.length, check };
    if (check !== 'none' && withAnswer === 0 && prepared.train.length > 0) warnings.push(`data.jsonl.answerCheck is '${check}' but no training record has a "${config.data.jsonl.fields.answer}" field: only ROUGE is reported`);
    if (config.dro.reward === 'correctness') {
      for (const e of prepared.train) {
        if (e.answer === undefined) problems.push({ file: e.origin?.file ?? config.data.trainPath ?? 'data', ...(e.origin ? { line: e.origin.line } : {}), recordId: e.id, field: config.data.jsonl.fields.answer, message: `no "${config.data.jsonl.fields.answer}" field, but dro.reward is 'correctness'` });
      }
    }
  }
  let demonstrations: DataCheck['demonstrations'];
  if (config.sft.steps > 0 && config.sft.demonstrations !== null) {
    try {
      const loaded = await loadDemonstrations(config.sft.demonstrations);
      problems.push(...loaded.skipped);
      demonstrations = { from: config.sft.demonstrations, usable: loaded.demonstrations.length };
    } catch (err) {
      throw failure('InvalidData', `sft.demonstrations: ${(err as Error).message}`, err);
    }
  }
  const tokenizer = prepared.tokenizer instanceof ByteTokenizer ? 'byte tokenizer' : `the tokenizer of ${config.model.path}`;
  return {
    task: config.data.task,
    tokenizer,
    chat: prepared.chat,
    train: { from: prepared.trainFrom, usable: prepared.train.length, ...lengthSummaries(prepared.lengths.train) },
    eval: { from: prepared.evalFrom, usable: prepared.eval.length, ...lengthSummaries(prepared.lengths.eval) },
    ...(answers ? { answers } : {}),
    ...(demonstrations ? { demonstrations } : {}),
    warnings,
    // In file order, whichever stage found them.
    problems: problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : (a.line ?? 0) - (b.line ?? 0))),
  };
}

function lengthSummaries(lengths: { prompt: number[]; reference: number[] }): { prompt?: LengthSummary; reference?: LengthSummary } {
  const prompt = summarise(lengths.prompt);
  const reference = summarise(lengths.reference);
  return { ...(prompt ? { prompt } : {}), ...(reference ? { reference } : {}) };
}
