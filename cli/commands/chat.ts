// `dro chat`: talk to a model: a run's checkpoint, read straight from the run's store (S3 or a directory), or
// a model directory or .gguf file. With --text one completion, else a conversation on stdin. Prompts are
// encoded as the run encoded its own (activities/run-data.ts encodeChat), so a first turn is a run's prompt.
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { Option, type Command } from 'commander';
import { encodeChat, runSystemMessage, usesChatTemplate } from '../../activities/run-data.js';
import { parseThinkAnswer, THINK_CLOSE, THINK_OPEN } from '../../datasets/task.js';
import { ByteTokenizer, loadModel, PolicyEngine, type ChatMessage, type ModelConfig, type Tokenizer } from '../../engine/index.js';
import { checkpointParameters, checkpointTokenizer, modelPathTokenizer, readRunCheckpoint } from '../checkpoint-model.js';
import { findRunStore, RunError } from '../client.js';
import { UsageError, integerOption, numberOption, parseInteger, textOption } from '../options.js';
import { storeOption } from './runs.js';

interface ChatOptions {
  run?: string;
  step?: string;
  store?: string;
  model?: string;
  text?: string;
  system?: string;
  temperature: number;
  topP: number;
  maxNewTokens?: number;
  seed: number;
  showReasoning: boolean;
  threads: number;
}

/** Without --max-new-tokens and without a run to take rollout.maxNewTokens from. */
const DEFAULT_MAX_NEW_TOKENS = 256;

/** A model to talk to, and how its prompts are written. */
export interface ChatModel {
  /** What it is, for the messages: "run x, checkpoint 3" or the path. */
  label: string;
  modelConfig: ModelConfig;
  params: ReadonlyMap<string, Float32Array>;
  tokenizer: Tokenizer;
  /** Whether prompts go through the chat template (the whole conversation), or are each message alone. */
  chat: boolean;
  /** The system message the run's prompts carried, if any. */
  system: string | null;
  /** The run's rollout.maxNewTokens, the default budget of a reply. */
  maxNewTokens?: number;
}

export function registerChatCommand(program: Command): void {
  program
    .command('chat')
    .description(
      "talk to a run's checkpoint (read from its store, S3 or a directory) or a model: with --text print one reply, else read messages from stdin, one a line, and reply to each (through the chat template, the whole conversation; without one, each message alone). Prompts are encoded as the run encoded its prompts",
    )
    .addOption(textOption('--run <id>', 'the run whose checkpoint to load (or --model)'))
    .addOption(textOption('--step <n>', 'with --run: the checkpoint step, or "latest", the newest valid one (default: latest)'))
    .addOption(storeOption())
    .addOption(textOption('--model <path>', 'a model directory (config.json, model.safetensors; without tokenizer.json the byte tokenizer) or a .gguf file, instead of --run'))
    .addOption(textOption('--text <text>', 'one message: print the reply and exit (without it, a conversation on stdin)'))
    .addOption(textOption('--system <text>', "system message at the start of the conversation (needs a chat template; default: the run's data.jsonl.system)"))
    .addOption(numberOption('--temperature <t>', 'sampling temperature; 0 is greedy').default(0.7))
    .addOption(numberOption('--top-p <p>', 'nucleus sampling: keep the smallest set of tokens with this much probability; 1 keeps all').default(1))
    .addOption(integerOption('--max-new-tokens <n>', `most tokens in a reply, an integer ≥ 1 (default: the run's rollout.maxNewTokens; ${DEFAULT_MAX_NEW_TOKENS} with --model)`, 1))
    .addOption(integerOption('--seed <s>', 'sampling seed, an integer ≥ 0 (same seed, same conversation, same replies)', 0).default(0))
    .addOption(new Option('--show-reasoning', 'print the whole completion; by default the <think>…</think> reasoning is left out and only the answer after it is printed').default(false))
    .addOption(integerOption('--threads <n>', `intra-op threads for the ONNX engine, from 1 to this machine's ${availableParallelism()} cores`, 1, { value: availableParallelism(), why: "this machine's cores" }).default(1))
    .action((opts: ChatOptions) => chat(opts));
}

async function chat(opts: ChatOptions): Promise<void> {
  if (opts.run !== undefined && opts.model !== undefined) throw new UsageError('give --run <id> or --model <path>, not both');
  if (opts.run === undefined && opts.model === undefined) throw new UsageError("give --run <id> (a run's checkpoint) or --model <path> (a model directory or .gguf file)");
  if (opts.model !== undefined && opts.step !== undefined) throw new UsageError('--step is for --run: a model directory or file has one set of weights');
  if (opts.model !== undefined && opts.store !== undefined) throw new UsageError('--store is for --run');
  const step = opts.step === undefined || opts.step === 'latest' ? 'latest' : parseInteger(opts.step, '--step', 0);
  const model = opts.run !== undefined ? await runModel(opts.run, step, opts.store) : await pathModel(opts.model!);
  if (opts.system !== undefined && !model.chat) throw new UsageError(`--system: ${model.label} has no chat template (${model.tokenizer instanceof ByteTokenizer ? 'the byte tokenizer' : 'its prompts do not use one'}), so a system message has no place in its prompts`);
  const conversation = new Conversation(model, {
    system: opts.system ?? model.system,
    temperature: opts.temperature,
    topP: opts.topP,
    maxNewTokens: opts.maxNewTokens ?? model.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS,
    seed: opts.seed,
    threads: opts.threads,
  });
  try {
    if (opts.text !== undefined) {
      show(await conversation.say(opts.text), opts);
      return;
    }
    await converse(conversation, model, opts);
  } finally {
    await conversation.release();
  }
}

async function runModel(runId: string, step: number | 'latest', store: string | undefined): Promise<ChatModel> {
  const run = await readRunCheckpoint(await findRunStore(runId, store), runId, step);
  const tokenizer = await checkpointTokenizer(run);
  const params = await checkpointParameters(run);
  // The run's own setting: data.jsonl.chat for the jsonl task, else the template wherever the tokenizer has one.
  const chat = usesChatTemplate(run.config, tokenizer);
  return { label: `run ${runId}, checkpoint ${run.step}`, modelConfig: run.modelConfig, params, tokenizer, chat, system: chat ? runSystemMessage(run.config) : null, maxNewTokens: run.config.rollout.maxNewTokens };
}

async function pathModel(path: string): Promise<ChatModel> {
  const { config, params } = await loadModel(path);
  const tokenizer = await modelPathTokenizer(path, config);
  // As a run's data.jsonl.chat 'auto': the template wherever the tokenizer has one.
  const chat = !(tokenizer instanceof ByteTokenizer) && tokenizer.applyChatTemplate !== undefined;
  return { label: path, modelConfig: config, params, tokenizer, chat, system: null };
}

export interface ChatSettings {
  system: string | null;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  threads: number;
}

export interface Reply {
  /** The completion's text, special tokens left out. */
  completion: string;
  /** Whether the token budget (or the model's window) ended it. */
  truncated: boolean;
  /** The budget it had. */
  maxNewTokens: number;
}

/**
 * A conversation with a model: each message is encoded as a run's prompt, through the chat template with
 * the conversation so far (the assistant's messages being its whole completions), or alone where prompts do
 * not use a template. Turn i samples with key (seed, 0, "chat", i): the same seed replays the same replies.
 */
export class Conversation {
  readonly #engine: PolicyEngine;
  readonly #history: ChatMessage[] = [];
  #turn = 0;

  constructor(
    readonly model: ChatModel,
    readonly settings: ChatSettings,
  ) {
    this.#engine = PolicyEngine.fromParameters(model.modelConfig, model.params, { intraOpThreads: settings.threads });
  }

  /** Forgets the conversation so far. */
  reset(): void {
    this.#history.length = 0;
  }

  /** The ids of the prompt `text` would be sent as now. */
  promptIds(text: string): number[] {
    const { system } = this.settings;
    const messages: ChatMessage[] = [...(system === null ? [] : [{ role: 'system', content: system }]), ...this.#history, { role: 'user', content: text }];
    return encodeChat(this.model.tokenizer, messages, { chat: this.model.chat });
  }

  async say(text: string): Promise<Reply> {
    const { tokenizer, modelConfig, chat } = this.model;
    const promptIds = this.promptIds(text);
    const window = modelConfig.max_position_embeddings;
    // The model sees at most its window: a long reply is cut off there rather than refused.
    const maxNewTokens = Math.min(this.settings.maxNewTokens, window - promptIds.length);
    if (maxNewTokens < 1) {
      throw new RunError(`the prompt is ${promptIds.length} tokens, which fills ${this.model.label}'s window of ${window} (max_position_embeddings)${chat && this.#history.length > 0 ? '; /reset starts a new conversation' : ''}`);
    }
    const eos = tokenizer.special.eos;
    const sampling = { temperature: this.settings.temperature, topP: this.settings.topP, topK: 0, maxNewTokens, stopTokenIds: eos === undefined ? [] : [eos], stopSequences: [] };
    const [result] = await this.#engine.generate([{ promptIds, key: { seed: this.settings.seed, step: 0, exampleId: 'chat', sampleIndex: this.#turn } }], sampling).catch((err: unknown) => {
      // The engine names its own options; the user typed flags.
      if (err instanceof Error) err.message = err.message.replace(/sampling option (temperature|topP)\b/, (_, o: string) => (o === 'topP' ? '--top-p' : '--temperature'));
      throw err;
    });
    this.#turn++;
    const completion = tokenizer.decode(result!.ids, { skipSpecialTokens: true });
    if (chat) this.#history.push({ role: 'user', content: text }, { role: 'assistant', content: completion });
    return { completion, truncated: result!.stopReason === 'max-new-tokens', maxNewTokens };
  }

  release(): Promise<void> {
    return this.#engine.release();
  }
}

/**
 * What of a completion is shown: all of it with --show-reasoning; else the answer after </think> (the
 * <think>…</think> reasoning left out), nothing where the reasoning never closed, and the whole text of a
 * completion without reasoning tags. `note` says why something is missing.
 */
export function visibleReply(completion: string, showReasoning: boolean): { text: string; note?: string } {
  if (showReasoning) return { text: completion };
  if (completion.includes(THINK_CLOSE)) return { text: parseThinkAnswer(completion).answer };
  if (completion.includes(THINK_OPEN)) return { text: '', note: `(the reply ended inside its reasoning, before ${THINK_CLOSE}; --show-reasoning shows it)` };
  return { text: completion };
}

function show(reply: Reply, opts: ChatOptions): void {
  const { text, note } = visibleReply(reply.completion, opts.showReasoning);
  console.log(text);
  if (note) console.error(note);
  if (reply.truncated) console.error(`(cut off at ${reply.maxNewTokens} tokens${opts.maxNewTokens === undefined ? '; --max-new-tokens gives more' : ''})`);
}

/** Messages from stdin, one a line, each answered on stdout; an empty line is skipped, /reset starts over, end of input ends. */
async function converse(conversation: Conversation, model: ChatModel, opts: ChatOptions): Promise<void> {
  const tty = process.stdin.isTTY === true;
  const how = model.chat ? 'through its chat template' : `each message alone: ${model.tokenizer instanceof ByteTokenizer ? 'the byte tokenizer has' : 'its prompts use'} no chat template, so the model does not see earlier turns`;
  console.error(`talking to ${model.label}, ${how}; /reset starts over, ${tty ? 'Ctrl-D' : 'the end of input'} ends`);
  const rl = createInterface({ input: process.stdin, ...(tty ? { output: process.stdout, terminal: true } : { terminal: false }) });
  rl.setPrompt('> ');
  if (tty) rl.prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === '/reset') {
      conversation.reset();
      console.error('(a new conversation)');
    } else if (text !== '') {
      try {
        show(await conversation.say(text), opts);
      } catch (err) {
        // A full window ends this turn, not the conversation.
        if (!(err instanceof RunError)) throw err;
        console.error(`dro: ${err.message}`);
      }
    }
    if (tty) rl.prompt();
  }
}
