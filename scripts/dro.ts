// The `dro` command line. Entry points stay small: parse arguments, wire the parts, run, and exit 1 with
// a message a user understands.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseModelConfig } from '../engine/model/config.js';
import { loadModelDir, saveModelDir } from '../engine/model/model-dir.js';
import { parameterCount } from '../engine/model/params.js';
import { PolicyEngine } from '../engine/policy.js';

const USAGE = `usage: dro <command> [options]

commands:
  model init  --config <config.json> --seed <n> --out <dir>
      Initialise a model from a Hugging Face LlamaConfig-style config.json (deterministic in the seed)
      and write <dir>/config.json and <dir>/model.safetensors.
  model score --model <dir> --ids <id,id,...> [--json] [--threads <n>]
      Score a token sequence: entry t is the log-probability and rank (1 = most likely) of ids[t+1]
      given ids[0..t].
  model generate --model <dir> --ids <prompt ids> --max-new-tokens <n> [--temperature <t>] [--top-p <p>]
                 [--top-k <k>] [--seed <s>] [--stop <id,id,...>] [--json] [--threads <n>]
      Sample a continuation (KV cache; temperature 0 is greedy). Prints the new token ids, their
      log-probabilities under the sampling distribution, and whether the token budget cut it off.

options:
  -h, --help   show this text`;

class UsageError extends Error {}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing ${flag}`);
  return value;
}

function integer(value: string, flag: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  return n;
}

async function modelInit(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' } } });
  const configPath = required(values.config, '--config');
  const seed = integer(required(values.seed, '--seed'), '--seed', 0);
  const out = required(values.out, '--out');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${configPath} as JSON: ${(err as Error).message}`, { cause: err });
  }
  const config = parseModelConfig(json, configPath);
  const engine = PolicyEngine.initialise(config, seed);
  await saveModelDir(out, config, engine.exportParameters());
  console.log(`wrote ${out}/config.json and ${out}/model.safetensors (${parameterCount(config).toLocaleString('en-US')} parameters, seed ${seed})`);
}

async function modelScore(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, ids: { type: 'string' }, json: { type: 'boolean', default: false }, threads: { type: 'string' } } });
  const dir = required(values.model, '--model');
  const ids = parseIds(required(values.ids, '--ids'), '--ids');
  if (ids.length < 2) throw new UsageError('--ids needs at least two token ids (the first one is only context)');
  const threads = values.threads ? integer(values.threads, '--threads', 1) : 1;
  const { config, params } = await loadModelDir(dir);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: threads });
  try {
    const [result] = await engine.score([{ ids, targetStart: 1 }]);
    if (values.json) console.log(JSON.stringify({ logprobs: result!.logprobs, ranks: result!.ranks }));
    else result!.logprobs.forEach((lp, t) => console.log(`${String(t).padStart(4)}  id ${String(ids[t + 1]).padStart(6)}  logprob ${lp.toFixed(6).padStart(11)}  rank ${result!.ranks[t]}`));
  } finally {
    await engine.release();
  }
}

function parseIds(text: string, flag: string): number[] {
  return text.split(',').map((s, i) => {
    const n = Number(s.trim());
    if (s.trim() === '' || !Number.isInteger(n) || n < 0) throw new UsageError(`${flag} entry ${i} (${JSON.stringify(s)}) is not a token id`);
    return n;
  });
}

function number(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

async function modelGenerate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      ids: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string' },
      json: { type: 'boolean', default: false },
      threads: { type: 'string' },
    },
  });
  const dir = required(values.model, '--model');
  const promptIds = parseIds(required(values.ids, '--ids'), '--ids');
  const maxNewTokens = integer(required(values['max-new-tokens'], '--max-new-tokens'), '--max-new-tokens', 1);
  const seed = values.seed ? integer(values.seed, '--seed', 0) : 0;
  const threads = values.threads ? integer(values.threads, '--threads', 1) : 1;
  const sampling = {
    maxNewTokens,
    temperature: number(values.temperature, '--temperature', 1),
    topP: number(values['top-p'], '--top-p', 1),
    topK: values['top-k'] ? integer(values['top-k'], '--top-k', 0) : 0,
    stopTokenIds: values.stop ? parseIds(values.stop, '--stop') : [],
  };
  const { config, params } = await loadModelDir(dir);
  const engine = PolicyEngine.fromParameters(config, params, { intraOpThreads: threads });
  try {
    const [result] = await engine.generate([{ promptIds, key: { seed, step: 0, exampleId: 'cli', sampleIndex: 0 } }], sampling);
    const { ids, logprobs, truncated } = result!;
    if (values.json) console.log(JSON.stringify({ ids, logprobs, truncated }));
    else console.log(`${ids.join(',')}\n${ids.length} tokens${truncated ? ' (cut off by --max-new-tokens)' : ''}, mean log-prob ${(logprobs.reduce((a, b) => a + b, 0) / Math.max(1, logprobs.length)).toFixed(4)}`);
  } finally {
    await engine.release();
  }
}

async function main(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  if (group === undefined || group === '-h' || group === '--help') {
    console.log(USAGE);
    if (group === undefined) process.exitCode = 2;
    return;
  }
  if (group === 'model' && command === 'init') return modelInit(rest);
  if (group === 'model' && command === 'score') return modelScore(rest);
  if (group === 'model' && command === 'generate') return modelGenerate(rest);
  throw new UsageError(`unknown command "${[group, command].filter(Boolean).join(' ')}"`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  console.error(`dro: ${message}`);
  if (err instanceof UsageError) console.error(`run \`dro --help\` for usage`);
  process.exit(1);
});
