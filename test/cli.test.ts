// The `dro model` commands end to end: init writes a Hugging Face-style model directory, score prints the
// log-probs and ranks the slow reference forward pass computes for the same weights. Then the command line
// itself: help for every command and option, and usage mistakes as one `dro: ...` line and exit 1. Then run
// configs in YAML or JSON with --set over them (`dro config show|fields`), every mistake named at once, and
// `dro train` refusing a bad config, naming every bad field, before it starts anything on Temporal.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConfigFieldDocs } from '../dro/config.js';
import { loadModelDir } from '../engine/model/model-dir.js';
import { PolicyEngine } from '../engine/policy.js';
import { trainingWorkflowId } from '../workflows/messages.js';
import { referenceLogprobsAndRanks } from './reference/llama-forward.js';
import { localServices } from './services-env.js';

const dro = join(import.meta.dirname, '..', 'bin', 'dro');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = (...args: string[]) => spawnSync(dro, args, { encoding: 'utf8' });

it('model init writes config.json and model.safetensors; model score matches the reference', async () => {
  const config = { vocab_size: 32, hidden_size: 16, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const init = run('model', 'init', '--config', join(dir, 'config.json'), '--seed', '5', '--out', join(dir, 'model'));
  expect(init.stderr).toBe('');
  expect(init.status).toBe(0);
  const written = JSON.parse(await readFile(join(dir, 'model', 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(written).toMatchObject({ ...config, architectures: ['LlamaForCausalLM'], model_type: 'llama' });

  const ids = [3, 17, 4, 9, 31, 0];
  const score = run('model', 'score', '--model', join(dir, 'model'), '--ids', ids.join(','), '--json');
  expect(score.status).toBe(0);
  const printed = JSON.parse(score.stdout) as { logprobs: number[]; ranks: number[] };
  const model = await loadModelDir(join(dir, 'model'));
  const reference = referenceLogprobsAndRanks(model.config, model.params, ids, 1);
  expect(printed.ranks).toEqual(reference.ranks);
  printed.logprobs.forEach((lp, i) => expect(Math.abs(lp - reference.logprobs[i]!)).toBeLessThanOrEqual(1e-4));

  // generate: greedy output equals the engine's, with the documented JSON shape.
  const gen = run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3,17,4', '--max-new-tokens', '5', '--temperature', '0', '--json');
  expect(gen.status).toBe(0);
  const generated = JSON.parse(gen.stdout) as { ids: number[]; logprobs: number[]; truncated: boolean };
  // The CLI's defaults: --threads 1, no stop sequences.
  const engine = PolicyEngine.fromParameters(model.config, model.params, { intraOpThreads: 1 });
  const [expected] = await engine.generate([{ promptIds: [3, 17, 4], key: { seed: 0, step: 0, exampleId: 'cli', sampleIndex: 0 } }], { temperature: 0, topP: 1, topK: 0, maxNewTokens: 5, stopTokenIds: [], stopSequences: [] });
  await engine.release();
  expect(generated).toEqual({ ids: expected!.ids, logprobs: expected!.logprobs, truncated: true });
  const sampled = (seed: string) => run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3,17,4', '--max-new-tokens', '8', '--seed', seed, '--json').stdout;
  expect(sampled('11')).toBe(sampled('11'));
  expect(run('model', 'generate', '--model', join(dir, 'model'), '--ids', '3', '--max-new-tokens', '0').stderr).toContain('--max-new-tokens must be an integer ≥ 1');

  // The same seed writes the same bytes.
  run('model', 'init', '--config', join(dir, 'config.json'), '--seed', '5', '--out', join(dir, 'again'));
  expect(Buffer.compare(await readFile(join(dir, 'model', 'model.safetensors')), await readFile(join(dir, 'again', 'model.safetensors')))).toBe(0);
});

it('reports bad input clearly and exits 1', async () => {
  const missing = run('model', 'score', '--model', join(dir, 'nowhere'), '--ids', '1,2');
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain(`cannot read ${join(dir, 'nowhere', 'config.json')}`);
  const badIds = run('model', 'score', '--model', join(dir, 'model'), '--ids', '1,,2');
  expect(badIds.stderr).toContain('--ids entry 1 ("") is not a token id');
  const outOfVocab = run('model', 'score', '--model', join(dir, 'model'), '--ids', '1,99');
  expect(outOfVocab.stderr).toContain('token id 99 at sequence 0, position 1 is outside the vocabulary (0..31)');
  await writeFile(join(dir, 'bad.json'), JSON.stringify({ vocab_size: 0, hidden_size: 16 }));
  const badConfig = run('model', 'init', '--config', join(dir, 'bad.json'), '--seed', '1', '--out', join(dir, 'x'));
  expect(badConfig.status).toBe(1);
  expect(badConfig.stderr).toMatch(/vocab_size/);
  // Node's own recursive mkdir never returns for a folder under /proc.
  const virtualFs = run('model', 'init', '--config', join(dir, 'config.json'), '--seed', '1', '--out', '/proc/dro-model');
  expect(virtualFs.status).toBe(1);
  expect(virtualFs.stderr).toBe('dro: cannot create folder /proc/dro-model: this filesystem does not allow new folders there (ENOENT)\n');
  const badTopP = run('model', 'generate', '--model', join(dir, 'model'), '--ids', '1', '--max-new-tokens', '2', '--top-p', '2');
  expect(badTopP.status).toBe(1);
  expect(badTopP.stderr).toMatch(/--top-p must be/);
  expect(badTopP.stderr).not.toMatch(/sampling option/);
  const unknown = run('model', 'train');
  expect(unknown.stderr).toContain('dro: unknown command "model train"');
});

describe('the command line', () => {
  const version = (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  // Each option is listed on a line of its own, followed by its description.
  const documents = (help: string, flag: string) => expect(help).toMatch(new RegExp(`^ +${flag}(?: <[a-z=]+>)? {2,}\\S`, 'm'));
  const runOptions = {
    train: ['--config', '--set', '--run-id', '--follow', '-h, --help'],
    resume: ['--run', '--store', '--config', '--set', '--follow', '-h, --help'],
    status: ['--run', '--store', '--json', '-h, --help'],
    pause: ['--run', '-h, --help'],
    stop: ['--run', '-h, --help'],
    set: ['--run', '--lr', '--kl-beta', '--temperature', '--eval-every', '--from-step', '-h, --help'],
    follow: ['--run', '-h, --help'],
    runs: ['--json', '-h, --help'],
    eval: ['--run', '--step', '--store', '--wait', '-h, --help'],
    'schedule-eval': ['--run', '--every', '--cron', '--store', '--list', '--pause', '--unpause', '--trigger', '--delete', '--json', '-h, --help'],
    report: ['--run', '--store', '--out', '-h, --help'],
  };
  const options = {
    init: ['--config', '--seed', '--out'],
    score: ['--model', '--ids', '--json', '--threads'],
    generate: ['--model', '--ids', '--max-new-tokens', '--temperature', '--top-p', '--top-k', '--seed', '--stop', '--json', '--threads'],
  };

  it('--help documents dro, dro model and every model sub-command with all their options', () => {
    const top = run('--help');
    expect(top.status).toBe(0);
    expect(top.stdout).toContain('Usage: dro');
    for (const sub of Object.keys(options)) expect(top.stdout).toMatch(new RegExp(`^ +model ${sub} \\[options\\] +\\S`, 'm'));
    ['-V, --version', '-h, --help'].forEach((flag) => documents(top.stdout, flag));

    const model = run('model', '--help');
    expect(model.status).toBe(0);
    expect(model.stdout).toContain('Usage: dro model');
    for (const sub of Object.keys(options)) expect(model.stdout).toMatch(new RegExp(`^ +${sub} \\[options\\] +\\S`, 'm'));
    documents(model.stdout, '-h, --help');

    for (const [sub, flags] of Object.entries(options)) {
      const help = run('model', sub, '--help');
      expect(help.status, sub).toBe(0);
      expect(help.stdout).toContain(`Usage: dro model ${sub} [options]`);
      flags.forEach((flag) => documents(help.stdout, flag));
    }
    const oneLine = (...args: string[]) => run(...args).stdout.replace(/\s+/g, ' '); // descriptions wrap at 80 columns
    expect(oneLine('model', 'init', '--help')).toMatch(/--seed <n> [^-]*\(required\)/);
    expect(oneLine('model', 'generate', '--help')).toMatch(/--temperature <t> [^-]*\(default: 1\)/);
  });

  it('--help of every run command lists every option', () => {
    for (const [command, flags] of Object.entries(runOptions)) {
      const help = run(command, '--help');
      expect(help.status, command).toBe(0);
      expect(help.stdout).toContain(`Usage: dro ${command} [options]`);
      flags.forEach((flag) => documents(help.stdout, flag));
    }
    const oneLine = (...args: string[]) => run(...args).stdout.replace(/\s+/g, ' ');
    expect(oneLine('train', '--help')).toMatch(/--config <file> [^-]*\(required\)/);
    expect(oneLine('resume', '--help')).toMatch(/--run <id> .*\(required\)/);
    expect(oneLine('status', '--help')).toMatch(/--run <id> .*\(required\)/);
  });

  it('with no arguments prints help and exits 2; --version prints the package version', () => {
    const bare = run();
    expect(bare.status).toBe(2);
    expect(bare.stdout + bare.stderr).toContain('Usage: dro');
    const group = run('model');
    expect(group.status).toBe(2);
    expect(group.stdout + group.stderr).toContain('Usage: dro model');
    const v = run('--version');
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe(version);
  });

  it('reports usage mistakes as one "dro:" line (plus a --help hint), without a stack trace, and exits 1', () => {
    const cases: [string[], string][] = [
      [['model', 'init', '--bogus', '--config', 'c.json', '--seed', '1', '--out', 'o'], "dro: unknown option '--bogus'"],
      [['model', 'init', '--bogus'], "dro: unknown option '--bogus'"], // before the missing required options
      [['model', 'score', '--treads', '2'], "dro: unknown option '--treads' (Did you mean --threads?)"],
      [['--bogus'], "dro: unknown option '--bogus'"],
      [['frobnicate'], 'dro: unknown command "frobnicate"'],
      [['model', 'frobnicate'], 'dro: unknown command "model frobnicate"'],
      [['model', 'init', '--config', 'c.json', '--out', 'o'], "dro: required option '--seed <n>' not specified"],
      [['model', 'generate', '--model', 'm', '--ids', '1'], "dro: required option '--max-new-tokens <n>' not specified"],
      [['model', 'init', '--config', 'c.json', '--seed', 'x', '--out', 'o'], 'dro: --seed must be an integer ≥ 0, got "x"'],
      [['model', 'init', '--config', 'c.json', '--seed'], "dro: option '--seed <n>' argument missing"],
      [['model', 'generate', '--model', 'm', '--ids', '1', '--max-new-tokens', '2', '--seed', '9007199254740993'], 'dro: --seed must be an integer from 0 to 2^53 - 1 (9007199254740991), got "9007199254740993"'],
      [['model', 'generate', '--model', 'm', '--ids', '1', '--max-new-tokens', '2', '--top-p', 'half'], 'dro: --top-p must be a number, got "half"'],
      [['model', 'score', '--model', 'm', '--ids', '1', '--threads', '0'], 'dro: --threads must be an integer ≥ 1, got "0"'],
      [['model', 'score', '--model', 'm', '--ids', '1', '--threads', '100000'], `dro: --threads must be at most ${availableParallelism()} (this machine's cores), got "100000"`],
      [['model', 'score', '--model', '', '--ids', '1,2'], 'dro: --model must not be empty'],
      [['model', 'score', 'extra', '--model', 'm', '--ids', '1,2'], "dro: too many arguments for 'score'"],
      [['pause'], "dro: required option '--run <id>' not specified"],
      [['stop', '--run', 'x', '--now'], "dro: unknown option '--now'"],
      [['set', '--run', 'x', '--lr', 'fast'], 'dro: --lr must be a number, got "fast"'],
      [['set', '--run', 'x', '--eval-every', '-2'], 'dro: --eval-every must be an integer ≥ 0, got "-2"'],
      [['set', '--run', 'x'], 'dro: give at least one of --lr, --kl-beta, --temperature, --eval-every'],
      [['follow', '--run', ''], 'dro: --run must not be empty'],
      [['runs', '--all'], "dro: unknown option '--all'"],
      [['eval', '--run', 'x', '--step', 'last'], 'dro: --step must be an integer ≥ 0, got "last"'],
      [['schedule-eval', '--run', 'x', '--every', 'often'], 'dro: --every must be a duration such as 30s, 10m, 2h or 1d, got "often"'],
      [['schedule-eval', '--run', 'x', '--every', '1h', '--delete'], 'dro: give exactly one of --every, --cron, --list, --pause, --unpause, --trigger, --delete (got --every, --delete)'],
      [['schedule-eval', '--pause'], 'dro: --pause needs --run <id>'],
      [['report'], "dro: required option '--run <id>' not specified"],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout, args.join(' ')).toBe('');
      const [first, ...rest] = r.stderr.trimEnd().split('\n');
      expect(first, args.join(' ')).toContain(message);
      expect(rest, args.join(' ')).toEqual([expect.stringMatching(/^run `dro( model( \w+)?| [a-z-]+)? --help` for usage$/)]);
    }
    expect(run('model', 'init', '--bogus').stderr).toContain('run `dro model init --help` for usage');
  });
});

describe('run configs as people write them: YAML or JSON, --set, dro config show and fields (no Temporal needed)', () => {
  const lines = (r: { stderr: string }) => r.stderr.trimEnd().split('\n');
  /** `dro` run in `cwd`, which relative paths in a config are taken from. */
  const runIn = (cwd: string, ...args: string[]) => spawnSync(dro, args, { encoding: 'utf8', cwd });

  it('reads a YAML config, --set over it; config show prints every default and reads back as a config', async () => {
    const file = join(dir, 'run.yaml');
    await writeFile(file, '# a small run\nseed: 3\nrollout:\n  groupSize: 16\noptimizer:\n  learningRate: 2.0e-5\nmodel:\n  loraTargets: [q_proj]\n');
    const sets = ['--set', 'optimizer.learningRate=1e-5', '--set', 'model.loraTargets=[q_proj, v_proj]', '--set', 'checkpoint.store=my-runs', '--set', 'model.init.hidden_size=32'];
    const shown = runIn(dir, 'config', 'show', '--config', file, ...sets, '--json');
    expect(shown.stderr).toBe('');
    expect(shown.status).toBe(0);
    const config = JSON.parse(shown.stdout) as Record<string, Record<string, unknown>>;
    expect(config.seed).toBe(3);
    expect(config.optimizer!.learningRate).toBe(1e-5); // --set wins over the file's 2e-5
    expect(config.model!.loraTargets).toEqual(['q_proj', 'v_proj']);
    expect(config.model!.init).toMatchObject({ hidden_size: 32, num_hidden_layers: 2 });
    expect(config.checkpoint!.store).toBe(join(dir, 'my-runs')); // relative to where dro runs, as for a path in the file
    // Every default is there, not only what the file gave.
    expect(config.rollout).toEqual({ promptsPerStep: 4, groupSize: 16, temperature: 1, topP: 1, maxNewTokens: 256, batchSequences: 32 });
    expect(Object.keys(config)).toEqual(['seed', 'model', 'data', 'rollout', 'dro', 'sft', 'optimizer', 'update', 'schedule', 'checkpoint', 'evaluation', 'filtering', 'orchestration']);

    // YAML by default; what it prints is a config that reads back to the same one.
    const yaml = runIn(dir, 'config', 'show', '--config', file, ...sets);
    expect(yaml.status).toBe(0);
    expect(yaml.stdout).toMatch(/^seed: 3\nmodel:\n {2}path: null\n/);
    await writeFile(join(dir, 'resolved.yaml'), yaml.stdout);
    expect(JSON.parse(runIn(dir, 'config', 'show', '--config', join(dir, 'resolved.yaml'), '--json').stdout)).toEqual(config);
    // A JSON file, and no file at all: the defaults.
    await writeFile(join(dir, 'run.json'), JSON.stringify({ rollout: { groupSize: 2 } }));
    expect((JSON.parse(run('config', 'show', '--config', join(dir, 'run.json'), '--json').stdout) as typeof config).rollout!.groupSize).toBe(2);
    expect((JSON.parse(run('config', 'show', '--json').stdout) as typeof config).rollout!.groupSize).toBe(8);
  });

  it('config fields lists every field with its allowed values, default and meaning', () => {
    const text = run('config', 'fields');
    expect(text.status).toBe(0);
    expect(text.stdout).toContain('\nrollout.groupSize: integer ≥ 1, default 8\n    G: reasoning chains sampled per prompt (ours)\n');
    expect(text.stdout).toContain("\nmodel.executionProvider: 'cpu' | 'cuda', default \"cpu\"\n");
    const json = JSON.parse(run('config', 'fields', '--json').stdout) as { path: string }[];
    expect(json.map((f) => f.path)).toEqual(runConfigFieldDocs().map((f) => f.path));
    expect(json.find((f) => f.path === 'optimizer.learningRate')).toEqual({ path: 'optimizer.learningRate', allowed: 'number > 0', default: 1e-5, description: 'Peak AdamW learning rate (ours)' });
    for (const [sub, flags] of [['show', ['--config', '--set', '--json']], ['fields', ['--json']]] as const) {
      const help = run('config', sub, '--help');
      expect(help.status).toBe(0);
      for (const flag of flags) expect(help.stdout).toMatch(new RegExp(`^ +${flag}(?: <[a-z=]+>)? {2,}\\S`, 'm'));
    }
    expect(run('--help').stdout).toMatch(/^ +config show \[options\] +\S/m);
  });

  it('names every problem at once: a near miss with the field meant, a whole number, a rule between fields', async () => {
    const file = join(dir, 'mistakes.yaml');
    await writeFile(file, 'rollout:\n  groupSize: 1.5\noptimizer:\n  learningrate: 1e-3\nschedule:\n  totalSteps: 5\n  warmupSteps: 10\nmodel:\n  executionProvider: gpu\n');
    const r = run('config', 'show', '--config', file);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r)).toEqual([
      `dro: ${file}: invalid run configuration:`,
      `  - model.executionProvider: must be one of 'cpu' | 'cuda', got "gpu"`,
      '  - rollout.groupSize: must be a whole number, got 1.5',
      '  - optimizer.learningrate: unknown field (did you mean `learningRate`?)',
      '  - schedule.warmupSteps: is 10, more than schedule.totalSteps (5)',
    ]);
    // --set mends two; the rest is still named, and so is where the config came from.
    expect(lines(run('config', 'show', '--config', file, '--set', 'rollout.groupSize=4', '--set', 'model.executionProvider=cuda'))).toEqual([
      `dro: ${file} with --set: invalid run configuration:`,
      '  - optimizer.learningrate: unknown field (did you mean `learningRate`?)',
      '  - schedule.warmupSteps: is 10, more than schedule.totalSteps (5)',
    ]);
  });

  // The messages themselves are checked in-process (test/run-config-file.test.ts); here, that the command line
  // prints them as one line and exits 1.
  it('names a YAML mistake by file:line:column, as one line', async () => {
    await writeFile(join(dir, 'twice.yaml'), 'seed: 1\nrollout:\n  groupSize: 8\n  groupSize: 9\n');
    expect(lines(run('config', 'show', '--config', join(dir, 'twice.yaml')))).toEqual([`dro: ${join(dir, 'twice.yaml')}:4:3: a key given twice (each field once): \`groupSize: 9\``]);
  });

  it('refuses a bad --set as a usage error naming the flag', () => {
    const cases: [string[], string][] = [
      [['config', 'show', '--set', 'optimizer.learningrate=1e-3'], 'dro: --set optimizer.learningrate=1e-3: unknown field optimizer.learningrate (did you mean `optimizer.learningRate`?)'],
      [['resume', '--run', 'r', '--set', 'seed=1'], 'dro: --set changes fields of --config <file>; give the file too'],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout, args.join(' ')).toBe('');
      const [first, ...rest] = lines(r);
      expect(first, args.join(' ')).toContain(message);
      expect(rest, args.join(' ')).toEqual([expect.stringMatching(/^run `dro (config show|train|resume) --help` for usage$/)]);
    }
    // A value --set gives is checked like one in the file.
    expect(lines(run('config', 'show', '--set', 'rollout.groupSize=1.5'))).toEqual(['dro: --set: invalid run configuration:', '  - rollout.groupSize: must be a whole number, got 1.5']);
  });

  it('dro train refuses a bad config before it connects to anything, naming every field, and exits 1', async () => {
    const file = join(dir, 'bad-train.yaml');
    await writeFile(file, 'rollout:\n  grupSize: 4\n  promptsPerStep: 2.5\nevaluation:\n  samples: 4\n');
    // Temporal at a closed port: a check that got as far as connecting would wait out the connect timeout and say so instead.
    const r = spawnSync(dro, ['train', '--config', file, '--set', 'optimizer.learningRate=-1'], { encoding: 'utf8', env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' }, timeout: 8000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r)).toEqual([
      `dro: ${file} with --set: invalid run configuration:`,
      '  - rollout.promptsPerStep: must be a whole number, got 2.5',
      '  - rollout.grupSize: unknown field (did you mean `groupSize`?)',
      '  - optimizer.learningRate: must be > 0, got -1',
      '  - evaluation.samples: is 4 but evaluation.temperature is 0: greedy samples are all the same; raise the temperature or use 1',
    ]);
  });
});

describe('dro train with a config', () => {
  let connection: Connection;
  let client: Client;
  beforeAll(async () => {
    // Loads TEMPORAL_ADDRESS (and the rest) into process.env, which the spawned `dro` inherits.
    const { temporalAddress } = localServices();
    connection = await Connection.connect({ address: temporalAddress });
    client = new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE ?? 'default' });
  });
  afterAll(async () => {
    await connection?.close();
  });

  const uniqueRunId = (label: string): string => `cli-${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  /** The workflow's status name, or 'not found' (any other error fails the test: Temporal must answer). */
  const workflowStatus = (runId: string): Promise<string> =>
    client.workflow
      .getHandle(trainingWorkflowId(runId))
      .describe()
      .then(
        (d) => d.status.name,
        (err: unknown) => {
          if (err instanceof WorkflowNotFoundError) return 'not found';
          throw err;
        },
      );

  it('refuses a config with several bad fields, naming every one, and starts nothing', async () => {
    const store = join(dir, 'bad-config-store');
    const file = join(dir, 'bad-run.json');
    await writeFile(
      file,
      JSON.stringify({
        colour: 'blue',
        rollout: { groupSize: 0 },
        model: { executionProvider: 'tpu', loraRank: -2 },
        checkpoint: { store },
      }),
    );
    const runId = uniqueRunId('bad');
    const r = run('train', '--config', file, '--run-id', runId);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(file);
    for (const field of ['colour', 'rollout.groupSize', 'model.executionProvider', 'model.loraRank']) expect(r.stderr, field).toContain(field);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await workflowStatus(runId)).toBe('not found');
    expect(existsSync(store)).toBe(false);
  });

  it('every run command names an unknown run in one line and exits 1', () => {
    const commands: string[][] = [['pause'], ['stop'], ['set', '--lr', '1e-5'], ['follow'], ['eval'], ['schedule-eval', '--every', '1h'], ['schedule-eval', '--pause']];
    for (const c of commands) {
      const r = run(c[0]!, '--run', 'no-such-run-anywhere', ...c.slice(1));
      expect(r.status, c.join(' ')).toBe(1);
      expect(r.stderr.trimEnd().split('\n'), c.join(' ')).toEqual([expect.stringMatching(/^dro: run no-such-run-anywhere (is not known to Temporal|has no evaluation schedule)/)]);
    }
    const report = run('report', '--run', 'no-such-run-anywhere', '--store', join(dir, 'empty-store'));
    expect(report.status).toBe(1);
    expect(report.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^dro: run no-such-run-anywhere has no metrics in .*; nothing to report$/)]);
  });

  it('a Temporal command says in one line when there is no server', () => {
    // Every command connects through the same withClient; each case waits out the 10 s connect timeout.
    for (const c of [['set', '--run', 'r', '--lr', '1'], ['schedule-eval', '--list']]) {
      const r = spawnSync(dro, c, { encoding: 'utf8', env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' } });
      expect(r.status, c.join(' ')).toBe(1);
      expect(r.stderr.trimEnd().split('\n'), c.join(' ')).toEqual([expect.stringMatching(/^dro: cannot reach Temporal at 127\.0\.0\.1:1: .*npm run services:up/)]);
    }
  });

  it('starts the run for the same config without the bad fields (the check above can see a started run)', async () => {
    const file = join(dir, 'good-run.json');
    await writeFile(file, JSON.stringify({ schedule: { totalSteps: 1 }, data: { synthetic: { trainCount: 4, evalCount: 2 } }, checkpoint: { store: join(dir, 'good-config-store') } }));
    const runId = uniqueRunId('good');
    const r = run('train', '--config', file, '--run-id', runId);
    try {
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`started run ${runId}`);
      expect(await workflowStatus(runId)).toBe('RUNNING');
    } finally {
      // Nothing should train it: end it at once, whether or not the assertions held.
      await client.workflow
        .getHandle(trainingWorkflowId(runId))
        .terminate('cli test: only the start was under test')
        .catch((err: unknown) => {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        });
    }
  });
});
