// `dro model init|import|merge|tokenize|score|generate`: create, import or merge a model directory, tokenize
// text, score a token sequence, sample a continuation.
import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import { encodeParameters, importGgufToDir, importHuggingFaceDir, initParameters, loadModel, parameterCount, parseModelConfig, PolicyEngine, saveModelDir, type Tokenizer } from '../../engine/index.js';
import { modelPathTokenizer } from '../checkpoint-model.js';
import { registerMergeCommand } from './model-merge.js';
import { UsageError, idsOption, integerOption, numberOption, textOption } from '../options.js';
import { readJsonFile } from '../../storage/local-files.js';

interface InitOptions {
  config: string;
  seed: number;
  out: string;
}

interface ImportOptions {
  gguf?: string;
  hf?: string;
  out: string;
}

interface TokenizeOptions {
  model: string;
  text: string;
  chat: boolean;
  json: boolean;
}

interface ScoreOptions {
  model: string;
  ids: number[];
  json: boolean;
  threads: number;
}

interface GenerateOptions {
  model: string;
  ids?: number[];
  text?: string;
  chat: boolean;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: number[];
  json: boolean;
  threads: number;
}

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('create, import, merge, tokenize with, score and sample from a model (a directory with config.json + model.safetensors, or a .gguf file)');
  const modelDir = () => textOption('--model <path>', 'model to load: a model directory (config.json, model.safetensors, e.g. from `dro model init` or `dro model import`) or a .gguf file').makeOptionMandatory();
  const json = () => new Option('--json', 'print one JSON object instead of text').default(false);
  // More threads than cores only contend, and a huge count makes ONNX Runtime allocate without end.
  const threads = () => integerOption('--threads <n>', `intra-op threads for the ONNX engine, from 1 to this machine's ${availableParallelism()} cores`, 1, { value: availableParallelism(), why: "this machine's cores" }).default(1);

  model
    .command('init')
    .description(
      'initialise a model from a Hugging Face LlamaConfig-style config.json (deterministic in the seed) and write <dir>/config.json and <dir>/model.safetensors',
    )
    .addOption(textOption('--config <file>', 'LlamaConfig-style config.json to read the architecture from').makeOptionMandatory())
    .addOption(integerOption('--seed <n>', 'initialisation seed, an integer ≥ 0 (same seed, same bytes)', 0).makeOptionMandatory())
    .addOption(textOption('--out <dir>', 'model directory to write').makeOptionMandatory())
    .action((opts: InitOptions) => modelInit(opts));

  model
    .command('import')
    .description(
      'convert a GGUF file (--gguf) or check and copy a Hugging Face model directory (--hf) into a model directory: config.json, model.safetensors (float32), tokenizer.json, tokenizer_config.json',
    )
    .addOption(textOption('--gguf <file>', 'GGUF file of a llama or qwen2 model (F32, F16, BF16, Q8_0, Q4_0, Q4_1 tensors)').conflicts('hf'))
    .addOption(textOption('--hf <dir>', 'Hugging Face model directory: config.json, model.safetensors or shards with model.safetensors.index.json, tokenizer.json'))
    .addOption(textOption('--out <dir>', 'model directory to write; must not exist yet').makeOptionMandatory())
    .action((opts: ImportOptions) => modelImport(opts));

  registerMergeCommand(model);

  model
    .command('tokenize')
    .description("print the token ids of a text under a model's own tokenizer (tokenizer.json, or a GGUF's vocabulary; the byte tokenizer for a model directory without tokenizer.json)")
    .addOption(modelDir())
    .addOption(textOption('--text <text>', 'text to tokenize; special-token text such as <|im_start|> becomes its special id').makeOptionMandatory())
    .addOption(new Option('--chat', "tokenize the text as one user message through the model's chat template, with the assistant prompt after it (what a run's prompt looks like)").default(false))
    .addOption(json())
    .action((opts: TokenizeOptions) => modelTokenize(opts));

  model
    .command('score')
    .description('score a token sequence: entry t is the log-probability and rank (1 = most likely) of ids[t+1] given ids[0..t]')
    .addOption(modelDir())
    .addOption(idsOption('--ids <ids>', 'comma-separated token ids, at least two (the first one is only context)').makeOptionMandatory())
    .addOption(json())
    .addOption(threads())
    .action((opts: ScoreOptions) => modelScore(opts));

  model
    .command('generate')
    .description(
      'sample a continuation (KV cache; temperature 0 is greedy); prints the new token ids, their log-probabilities under the sampling distribution, and whether the token budget cut it off; with --text, the continuation as text (--json: with its ids)',
    )
    .addOption(modelDir())
    .addOption(idsOption('--ids <ids>', 'comma-separated prompt token ids (or --text)'))
    .addOption(
      textOption(
        '--text <text>',
        "prompt text instead of --ids: encoded with the model's tokenizer (the ids `dro model tokenize` prints; the byte tokenizer for a directory without tokenizer.json), the continuation printed as text; its end-of-sequence token also ends the generation",
      ),
    )
    .addOption(new Option('--chat', "with --text: the text as one user message through the model's chat template, with the assistant prompt after it (as `dro model tokenize --chat`)").default(false))
    .addOption(integerOption('--max-new-tokens <n>', 'most tokens to generate, an integer ≥ 1', 1).makeOptionMandatory())
    .addOption(numberOption('--temperature <t>', 'sampling temperature; 0 is greedy').default(1))
    .addOption(numberOption('--top-p <p>', 'nucleus sampling: keep the smallest set of tokens with this much probability; 1 keeps all').default(1))
    .addOption(integerOption('--top-k <k>', 'keep only the k most likely tokens; 0 keeps all', 0).default(0))
    .addOption(integerOption('--seed <s>', 'sampling seed, an integer ≥ 0 (same seed, same tokens)', 0).default(0))
    .addOption(idsOption('--stop <ids>', 'comma-separated token ids that end the generation (kept in the output)').default([], 'none'))
    .addOption(json())
    .addOption(threads())
    .action((opts: GenerateOptions) => modelGenerate(opts));
}

async function modelInit({ config: configPath, seed, out }: InitOptions): Promise<void> {
  const config = parseModelConfig(await readJsonFile(configPath), configPath);
  await saveModelDir(out, config, encodeParameters(config, initParameters(config, seed)));
  console.log(`wrote ${out}/config.json and ${out}/model.safetensors (${parameterCount(config).toLocaleString('en-US')} parameters, seed ${seed})`);
}

async function modelImport(opts: ImportOptions): Promise<void> {
  if ((opts.gguf === undefined) === (opts.hf === undefined)) throw new UsageError('give one source: --gguf <file> or --hf <dir>');
  const started = performance.now();
  const summary = opts.gguf !== undefined ? await importGgufToDir(opts.gguf, opts.out) : await importHuggingFaceDir(opts.hf!, opts.out);
  const c = summary.config;
  console.log(
    `wrote ${opts.out}: ${summary.files.join(', ')} (${summary.parameters.toLocaleString('en-US')} parameters in ${summary.tensors} tensors; ${c.num_hidden_layers} layers, ${c.hidden_size} wide, vocabulary ${c.vocab_size}) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

/** The ids of `text` under `tokenizer`, as one user message through its chat template with `chat`. */
function encodeText(tokenizer: Tokenizer, model: string, text: string, chat: boolean): number[] {
  if (!chat) return tokenizer.encode(text);
  if (!tokenizer.applyChatTemplate) throw new UsageError(`--chat: the tokenizer of ${model} has no chat template`);
  return tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content: text }], { addGenerationPrompt: true }));
}

async function modelTokenize(opts: TokenizeOptions): Promise<void> {
  const tokenizer = await modelPathTokenizer(opts.model);
  const ids = encodeText(tokenizer, opts.model, opts.text, opts.chat);
  if (opts.json) console.log(JSON.stringify({ ids, tokens: ids.map((id) => tokenizer.idToToken(id) ?? null) }));
  else console.log(`${ids.join(',')}\n${ids.length} tokens`);
}

async function modelScore(opts: ScoreOptions): Promise<void> {
  const { ids } = opts;
  if (ids.length < 2) throw new UsageError('--ids needs at least two token ids (the first one is only context)');
  const { config, params } = await loadModel(opts.model);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: opts.threads });
  try {
    const [result] = await engine.score([{ ids, targetStart: 1 }]);
    if (opts.json) console.log(JSON.stringify({ logprobs: result!.logprobs, ranks: result!.ranks }));
    else result!.logprobs.forEach((lp, t) => console.log(`${String(t).padStart(4)}  id ${String(ids[t + 1]).padStart(6)}  logprob ${lp.toFixed(6).padStart(11)}  rank ${result!.ranks[t]}`));
  } finally {
    await engine.release();
  }
}

const FLAGS = { temperature: '--temperature', topP: '--top-p', topK: '--top-k', maxNewTokens: '--max-new-tokens' } as const;

async function modelGenerate(opts: GenerateOptions): Promise<void> {
  if ((opts.ids === undefined) === (opts.text === undefined)) throw new UsageError('give exactly one of --ids <ids> or --text <text>');
  if (opts.chat && opts.text === undefined) throw new UsageError('--chat is for --text');
  const { config, params } = await loadModel(opts.model);
  const tokenizer = opts.text === undefined ? undefined : await modelPathTokenizer(opts.model, config);
  const promptIds = tokenizer ? encodeText(tokenizer, opts.model, opts.text!, opts.chat) : opts.ids!;
  // No flag for stop sequences: generation ends at a --stop token (with --text, also the end-of-sequence token) or the token budget.
  const eos = tokenizer?.special.eos;
  const stopTokenIds = eos === undefined || opts.stop.includes(eos) ? opts.stop : [...opts.stop, eos];
  const sampling = { maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topP: opts.topP, topK: opts.topK, stopTokenIds, stopSequences: [] };
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: opts.threads });
  try {
    const [result] = await engine.generate([{ promptIds, key: { seed: opts.seed, step: 0, exampleId: 'cli', sampleIndex: 0 } }], sampling).catch((err: unknown) => {
      // The engine names its own option; the user typed a flag.
      if (err instanceof Error) err.message = err.message.replace(/sampling option (temperature|topP|topK|maxNewTokens)\b/, (_, o: keyof typeof FLAGS) => FLAGS[o]);
      throw err;
    });
    const { ids, logprobs, truncated } = result!;
    if (tokenizer) {
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      if (opts.json) console.log(JSON.stringify({ promptIds, ids, logprobs, truncated, text }));
      else {
        console.log(text);
        if (truncated) console.error(`(cut off by --max-new-tokens ${opts.maxNewTokens})`);
      }
      return;
    }
    if (opts.json) console.log(JSON.stringify({ ids, logprobs, truncated }));
    else console.log(`${ids.join(',')}\n${ids.length} tokens${truncated ? ' (cut off by --max-new-tokens)' : ''}, mean log-prob ${(logprobs.reduce((a, b) => a + b, 0) / Math.max(1, logprobs.length)).toFixed(4)}`);
  } finally {
    await engine.release();
  }
}
