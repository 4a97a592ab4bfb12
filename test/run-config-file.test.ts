// Reading a run config file as `dro train` does: YAML or JSON with --set settings over it, relative paths
// made absolute against the caller's folder, `~` expanded like a shell would, `~user` refused rather than
// taken as a folder named so.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readRunConfig, RunError, runStoreUri } from '../cli/client.js';
import { parseSetting, readConfigFile } from '../cli/config-file.js';
import { UsageError } from '../cli/options.js';
import { DEFAULT_INIT_MODEL } from '../dro/config.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-config-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('expands ~ in store and file paths, keeps URIs, and makes relative paths absolute', async () => {
  const file = join(dir, 'run.json');
  await writeFile(file, JSON.stringify({ checkpoint: { store: '~/dro-runs' }, sft: { steps: 1, demonstrations: 'demos.jsonl' } }));
  const config = await readRunConfig(file, dir);
  expect(config.checkpoint.store).toBe(join(homedir(), 'dro-runs'));
  expect(config.sft.demonstrations).toBe(join(dir, 'demos.jsonl'));
  await writeFile(file, JSON.stringify({ checkpoint: { store: 's3://bucket/prefix' } }));
  expect((await readRunConfig(file, dir)).checkpoint.store).toBe('s3://bucket/prefix');
  expect(runStoreUri('~', undefined)).toBe(homedir());
  expect(runStoreUri('~/x', undefined)).toBe(join(homedir(), 'x'));
});

it('refuses ~user paths, naming the field', async () => {
  const file = join(dir, 'run.json');
  await writeFile(file, JSON.stringify({ checkpoint: { store: '~alice/runs' } }));
  await expect(readRunConfig(file, dir)).rejects.toThrow(new RunError('checkpoint.store: "~alice/runs": only ~ and ~/... are expanded; write the path out'));
  expect(() => runStoreUri('~bob', undefined)).toThrow(/^--store: "~bob": only ~ and ~\/\.\.\. are expanded/);
});

it('reads a config saved with a byte-order mark; bad JSON and bad UTF-8 are named by file and line', async () => {
  const file = join(dir, 'bom.json');
  await writeFile(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ seed: 9 }))]));
  expect((await readRunConfig(file, dir)).seed).toBe(9);
  await writeFile(file, '{\n  "seed": 1,\n}');
  await expect(readRunConfig(file, dir)).rejects.toThrow(new RunError(`${file} is not valid JSON: Expected double-quoted property name at line 3, column 1`));
  await writeFile(file, Buffer.concat([Buffer.from('{\n"seed": 1,\n"name": "'), Buffer.from([0xff]), Buffer.from('"}')]));
  await expect(readRunConfig(file, dir)).rejects.toThrow(new RunError(`${file}: line 3 is not valid UTF-8 text (re-save the file as UTF-8)`));
  await expect(readRunConfig(join(dir, 'missing.json'), dir)).rejects.toThrow(`cannot read ${join(dir, 'missing.json')}: ENOENT`);
});

it('reads YAML with --set settings over it; a free-form field set by key starts from its default', async () => {
  const file = join(dir, 'run.yml');
  await writeFile(file, '# comments are fine\nseed: 2\noptimizer: {learningRate: 3.0e-5}\ncheckpoint:\n  store: here\n');
  const settings = ['optimizer.learningRate=1e-5', 'model.loraTargets=[q_proj, v_proj]', 'model.init.hidden_size=32', 'sft.demonstrations=demos.jsonl', 'data.synthetic.op="*"'].map((s) => parseSetting(s, '--set'));
  const config = await readRunConfig(file, dir, settings);
  expect([config.seed, config.optimizer.learningRate, config.model.loraTargets, config.data.synthetic.op]).toEqual([2, 1e-5, ['q_proj', 'v_proj'], '*']);
  expect(config.model.init).toEqual({ ...DEFAULT_INIT_MODEL, hidden_size: 32 });
  // Paths given by --set are taken from the caller's folder too.
  expect([config.checkpoint.store, config.sft.demonstrations]).toEqual([join(dir, 'here'), join(dir, 'demos.jsonl')]);
  // An empty YAML file is the defaults; a later --set of one field wins.
  await writeFile(file, '');
  expect((await readRunConfig(file, dir, [parseSetting('seed=4', '--set'), parseSetting('seed=5', '--set')])).seed).toBe(5);
});

it('refuses what YAML would otherwise take silently: a key twice, a list for a config, an alias bomb', async () => {
  const file = join(dir, 'bad.yaml');
  await writeFile(file, 'seed: 1\nseed: 2\n');
  await expect(readRunConfig(file, dir)).rejects.toThrow(new RunError(`${file}:2:1: a key given twice (each field once): \`seed: 2\``));
  await writeFile(file, '- seed: 1\n');
  await expect(readRunConfig(file, dir)).rejects.toThrow(new RunError(`${file}: a run config is an object of sections (seed, model, data, ...), in YAML or JSON`));
  await writeFile(file, ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefg'.split('').map((n, i) => `${n}: &${n} [${Array(10).fill(`*${'abcdefg'[i]}`).join(', ')}]`)].join('\n'));
  await expect(readRunConfig(file, dir)).rejects.toThrow(`${file}: Excessive alias count`);
  expect(() => parseSetting('seed', '--set')).toThrow(UsageError);
  expect(() => parseSetting('optimizer.lr=1', '--set')).toThrow('--set optimizer.lr=1: unknown field optimizer.lr');
});

it('names YAML and JSON mistakes by file:line:column, a key given twice included; another extension is JSON, else YAML', async () => {
  const cases: [string, string, string][] = [
    ['twice.yaml', 'seed: 1\nrollout:\n  groupSize: 8\n  groupSize: 9\n', ':4:3: a key given twice (each field once): `groupSize: 9`'],
    ['twice.json', '{\n  "seed": 1,\n  "seed": 2\n}\n', ':3:3: a key given twice (each field once): `"seed": 2`'],
    ['broken.yml', 'seed: 1\nrollout: [1, 2\nschedule: {}\n', ':3:1: Flow sequence in block collection must be sufficiently indented and end with a ]: `schedule: {}`'],
  ];
  for (const [name, text, message] of cases) {
    await writeFile(join(dir, name), text);
    await expect(readConfigFile(join(dir, name)), name).rejects.toThrow(`${join(dir, name)}${message}`);
  }
  await writeFile(join(dir, 'broken.json'), '{\n  "seed": 1,\n}');
  await expect(readConfigFile(join(dir, 'broken.json'))).rejects.toThrow(`${join(dir, 'broken.json')} is not valid JSON: Expected double-quoted property name at line 3, column 1`);
  await writeFile(join(dir, 'run.conf'), 'seed: 4\n');
  expect(await readConfigFile(join(dir, 'run.conf'))).toEqual({ seed: 4 });
  await writeFile(join(dir, 'odd.conf'), 'seed: 1\n  x: 2\n');
  await expect(readConfigFile(join(dir, 'odd.conf'))).rejects.toThrow(new RegExp(`^${join(dir, 'odd.conf')} is neither JSON nor YAML .*; read as YAML: .*odd\\.conf:1:\\d+: `));
});

it('refuses a bad --set naming the flag and what is wrong', () => {
  const cases: [string, string][] = [
    ['rollout.groupSize', '--set takes path=value (e.g. --set optimizer.learningRate=1e-5), got "rollout.groupSize"'],
    ['=16', "--set =16: no field path before '='"],
    ['rollout..groupSize=16', '--set rollout..groupSize=16: "rollout..groupSize" has an empty part between dots'],
    ['optimizer.learningrate=1e-3', '--set optimizer.learningrate=1e-3: unknown field optimizer.learningrate (did you mean `optimizer.learningRate`?)'],
    ['rollout.groupSize=', "--set rollout.groupSize=: no value after '='"],
    ['model.loraTargets=[q_proj', '--set model.loraTargets=[q_proj: the value is not valid YAML'],
    ['epochs=3', '--set epochs=3: unknown field epochs'],
  ];
  for (const [text, message] of cases) {
    let thrown: unknown;
    try {
      parseSetting(text, '--set');
    } catch (err) {
      thrown = err;
    }
    expect(thrown, text).toBeInstanceOf(UsageError);
    expect((thrown as Error).message, text).toContain(message);
  }
});
