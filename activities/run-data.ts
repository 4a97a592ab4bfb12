// A run's data as the activities see it: the task, its training and held-out examples, the tokenizer,
// and the one place that turns examples and completions into token ids (prompt, chain context,
// reference outcome), so generation, scoring, training and evaluation all agree.
import type { RunConfig } from '../dro/config.js';
import { finqaTask } from '../datasets/finqa.js';
import { pararevSource, pararevTask } from '../datasets/pararev.js';
import { sharedDatasetFile } from '../datasets/paths.js';
import { syntheticExample, syntheticTask } from '../datasets/synthetic.js';
import { DatasetError, THINK_CLOSE, THINK_OPEN, type Example, type SkippedRecord, type Task } from '../datasets/task.js';
import { ByteTokenizer, loadModelConfig, loadModelTokenizer, parseModelConfig, type ModelConfig, type Tokenizer } from '../engine/index.js';
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

async function loadExamples(config: RunConfig): Promise<{ task: Task; train: Example[]; eval: Example[]; skipped: SkippedRecord[] }> {
  const { data } = config;
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
    return { task: syntheticTask, train, eval: held, skipped: [] };
  }
  const task = (data.task === 'finqa' ? finqaTask : pararevTask) as Task;
  const defaults =
    data.task === 'finqa'
      ? { train: { kind: 'file' as const, path: sharedDatasetFile('finqa', 'train_100.json').path }, eval: { kind: 'file' as const, path: sharedDatasetFile('finqa', 'dev_200.json').path } }
      : { train: pararevSource(), eval: pararevSource() };
  const trainSource = data.trainPath === null ? defaults.train : { kind: 'file' as const, path: data.trainPath };
  const evalSource = data.evalPath === null ? defaults.eval : { kind: 'file' as const, path: data.evalPath };
  try {
    const train = await task.load(trainSource);
    const held = await task.load(evalSource);
    return { task, train: train.examples, eval: held.examples, skipped: [...train.skipped, ...held.skipped] };
  } catch (err) {
    throw failure('InvalidData', err instanceof DatasetError ? err.message : `data: ${(err as Error).message}`, err);
  }
}

async function loadRunData(config: RunConfig): Promise<RunData> {
  const modelConfig = await modelConfigOf(config);
  const useByte = config.model.tokenizer === 'byte' || (config.model.tokenizer === 'auto' && config.model.path === null);
  let tokenizer: Tokenizer;
  try {
    tokenizer = useByte ? new ByteTokenizer() : await loadModelTokenizer(config.model.path!);
  } catch (err) {
    throw failure('InvalidConfig', `model.tokenizer: ${(err as Error).message}`, err);
  }
  if (tokenizer.vocabSize > modelConfig.vocab_size) {
    throw failure('InvalidConfig', `model: the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab_size is ${modelConfig.vocab_size}`);
  }
  const eos = tokenizer.special.eos;
  if (eos === undefined) throw failure('InvalidConfig', 'model.tokenizer: the tokenizer has no end-of-sequence token, so completions could never end');
  const { task, train, eval: held, skipped } = await loadExamples(config);

  const promptTextIds = (text: string): number[] => {
    if (tokenizer instanceof ByteTokenizer) return [tokenizer.special.bos, ...tokenizer.encode(text), tokenizer.special.sep];
    if (tokenizer.applyChatTemplate) return tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content: text }], { addGenerationPrompt: true }));
    return tokenizer.encode(text, { addSpecialTokens: true });
  };
  const promptIds = (example: Example): number[] => promptTextIds(task.formatPrompt(example));
  const referenceIds = (example: Example): number[] => tokenizer.encode(task.referenceOutcome(example));

  // Examples too long for the configured budgets are dropped here, once, and reported.
  const fits = (example: Example, file: string): boolean => {
    const p = promptIds(example).length;
    const r = referenceIds(example).length;
    if (p > config.data.maxPromptTokens) skipped.push({ file, recordId: example.id, field: 'prompt', message: `prompt has ${p} tokens, more than data.maxPromptTokens ${config.data.maxPromptTokens}` });
    else if (r > config.data.maxReferenceTokens) skipped.push({ file, recordId: example.id, field: 'reference', message: `reference has ${r} tokens, more than data.maxReferenceTokens ${config.data.maxReferenceTokens}` });
    else if (r === 0) skipped.push({ file, recordId: example.id, field: 'reference', message: 'reference outcome is empty' });
    else return true;
    return false;
  };
  const trainKept = train.filter((e) => fits(e, config.data.trainPath ?? `${task.name} training set`));
  const evalKept = held.filter((e) => fits(e, config.data.evalPath ?? `${task.name} held-out set`));
  if (trainKept.length === 0) throw failure('InvalidData', `data: no usable training examples (${skipped.length} skipped; first: ${skipped[0]?.message ?? 'none loaded'})`);
  const trainMap = new Map<string, Example>();
  for (const e of trainKept) {
    if (trainMap.has(e.id)) throw failure('InvalidData', `data: training example id ${e.id} appears twice`);
    trainMap.set(e.id, e);
  }
  return {
    task,
    train: trainMap,
    eval: evalKept,
    skipped,
    tokenizer,
    modelConfig,
    eos,
    promptIds,
    promptTextIds,
    referenceIds,
    chainContextIds: (prompt, chainText) => [...prompt, ...tokenizer.encode(`${chainText} `)],
  };
}
