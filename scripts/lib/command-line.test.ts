// The dev scripts' command line: list and choice options parse what the benches accept and name the flag
// when they refuse, and a script run with a bad value prints one line and a hint and exits 2.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInteger, UsageError } from '../../cli/options.js';
import { parseCommandLine } from '../../cli/program.js';
import { choiceOption, listOption, scriptProgram } from './command-line.js';

/** The options a one-command script program parsed from `argv`. */
async function parse(argv: string[]): Promise<Record<string, unknown>> {
  let parsed: Record<string, unknown> = {};
  const program = scriptProgram('bench:test')
    .addOption(listOption('--batch <sizes>', 'batch sizes', (v, f) => parseInteger(v, f, 1)).default([1, 16], '1,16'))
    .addOption(choiceOption('--mode <m>', 'mode', ['fast', 'slow']))
    .action((o: Record<string, unknown>) => {
      parsed = o;
    });
  await parseCommandLine(program, argv);
  return parsed;
}

describe('script options', () => {
  it('parse comma-separated lists, dropping blanks and empty entries, keeping order and repeats', async () => {
    expect((await parse([])).batch).toEqual([1, 16]);
    expect((await parse(['--batch', ' 4, ,2,4,'])).batch).toEqual([4, 2, 4]);
  });

  it('refuse an empty list and a bad entry, naming the flag', async () => {
    await expect(parse(['--batch', ' , '])).rejects.toThrow(new UsageError('--batch must not be empty', 'npm run bench:test --'));
    await expect(parse(['--batch', '1,x'])).rejects.toThrow('--batch must be an integer ≥ 1, got "x"');
    await expect(parse(['--batch', '1,0'])).rejects.toThrow('--batch must be an integer ≥ 1, got "0"');
  });

  it('take one of the listed choices and say which when refusing', async () => {
    expect((await parse(['--mode', 'slow'])).mode).toBe('slow');
    await expect(parse(['--mode', 'Slow'])).rejects.toThrow('--mode must be one of fast, slow, got "Slow"');
    expect(choiceOption('--mode <m>', 'mode', ['fast', 'slow']).description).toBe('mode: fast or slow');
  });
});

describe('a script run', () => {
  const tsx = join(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'tsx');
  const fuzz = join(import.meta.dirname, '..', 'dev', 'fuzz.ts');
  const run = (...args: string[]) => spawnSync(tsx, [fuzz, ...args], { encoding: 'utf8' });

  it('exits 2 with one line naming the flag and a --help hint for a bad value or an unknown flag', () => {
    const bad = run('--runs', '0');
    expect([bad.status, bad.stdout, bad.stderr.trimEnd().split('\n')]).toEqual([2, '', ['fuzz: --runs must be an integer ≥ 1, got "0"', 'run `npm run fuzz -- --help` for usage']]);
    const unknown = run('--run', '5');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/^fuzz: unknown option '--run' \(Did you mean --runs\?\)\nrun `npm run fuzz -- --help` for usage\n$/);
  });

  it('prints generated help on stdout and exits 0', () => {
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npm run fuzz -- \[options\]\n/);
    expect(help.stdout).toContain('--runs <n>');
  });
});
