// `dro model init|score|generate`: create a model directory, score a token sequence, sample a continuation.
import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import { parseModelConfig } from '../../engine/model/config.js';
import { loadModelDir, saveModelDir } from '../../engine/model/model-dir.js';
import { parameterCount } from '../../engine/model/params.js';
import { PolicyEngine } from '../../engine/policy.js';
import { UsageError, idsOption, integerOption, numberOption, textOption } from './options.js';
import { readJsonFile } from '../../storage/local-files.js';

interface InitOptions {
  config: string;
  seed: number;
  out: string;
}

interface ScoreOptions {
  model: string;
  ids: number[];
  json: boolean;
  threads: number;
}

interface GenerateOptions {
  model: string;
  ids: number[];
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
  const model = program.command('model').description('create, score and sample from a model directory (config.json + model.safetensors)');
  const modelDir = () => textOption('--model <dir>', 'model directory to load (config.json and model.safetensors, e.g. from `dro model init`)').makeOptionMandatory();
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
      'sample a continuation (KV cache; temperature 0 is greedy); prints the new token ids, their log-probabilities under the sampling distribution, and whether the token budget cut it off',
    )
    .addOption(modelDir())
    .addOption(idsOption('--ids <ids>', 'comma-separated prompt token ids').makeOptionMandatory())
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
  const engine = PolicyEngine.initialise(config, seed);
  await saveModelDir(out, config, engine.exportParameters());
  console.log(`wrote ${out}/config.json and ${out}/model.safetensors (${parameterCount(config).toLocaleString('en-US')} parameters, seed ${seed})`);
}

async function modelScore(opts: ScoreOptions): Promise<void> {
  const { ids } = opts;
  if (ids.length < 2) throw new UsageError('--ids needs at least two token ids (the first one is only context)');
  const { config, params } = await loadModelDir(opts.model);
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
  const sampling = { maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topP: opts.topP, topK: opts.topK, stopTokenIds: opts.stop };
  const { config, params } = await loadModelDir(opts.model);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: opts.threads });
  try {
    const [result] = await engine.generate([{ promptIds: opts.ids, key: { seed: opts.seed, step: 0, exampleId: 'cli', sampleIndex: 0 } }], sampling).catch((err: unknown) => {
      // The engine names its own option; the user typed a flag.
      if (err instanceof Error) err.message = err.message.replace(/sampling option (temperature|topP|topK|maxNewTokens)\b/, (_, o: keyof typeof FLAGS) => FLAGS[o]);
      throw err;
    });
    const { ids, logprobs, truncated } = result!;
    if (opts.json) console.log(JSON.stringify({ ids, logprobs, truncated }));
    else console.log(`${ids.join(',')}\n${ids.length} tokens${truncated ? ' (cut off by --max-new-tokens)' : ''}, mean log-prob ${(logprobs.reduce((a, b) => a + b, 0) / Math.max(1, logprobs.length)).toFixed(4)}`);
  } finally {
    await engine.release();
  }
}
