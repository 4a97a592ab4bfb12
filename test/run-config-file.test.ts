// Reading a run config file as `dro train` does: relative paths made absolute against the caller's
// folder, `~` expanded like a shell would, `~user` refused rather than taken as a folder named so.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readRunConfig, RunError, runStoreUri } from '../cli/client.js';

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
