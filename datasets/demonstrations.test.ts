// SFT demonstrations: the JSONL loader on temp files (ids, blank lines, every kind of bad line, strict mode,
// unreadable files) and the synthetic mapping onto the same shape.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDemonstrations, syntheticDemonstrations } from './demonstrations.js';
import { generateSyntheticExamples, sftCompletion, syntheticTask } from './synthetic.js';
import { DatasetError } from './task.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'demonstrations-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, lines: string[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, lines.join('\n'));
  return path;
}

const demo = (fields: Record<string, unknown>): string => JSON.stringify({ prompt: 'Compute 1 + 2.', completion: '<think>1+2=3</think> 3', ...fields });

describe('loadDemonstrations', () => {
  it('reads prompt and completion verbatim, with given ids or line-<n>, ignoring blank lines', async () => {
    const path = await write('good.jsonl', [demo({ id: 'first' }), '', '   ', demo({ prompt: '  spaced\nprompt ', completion: ' kept ' }), `${demo({ id: 'crlf' })}\r`, '']);
    const { demonstrations, skipped } = await loadDemonstrations(path);
    expect(skipped).toEqual([]);
    expect(demonstrations).toEqual([
      { id: 'first', prompt: 'Compute 1 + 2.', completion: '<think>1+2=3</think> 3' },
      { id: 'line-4', prompt: '  spaced\nprompt ', completion: ' kept ' },
      { id: 'crlf', prompt: 'Compute 1 + 2.', completion: '<think>1+2=3</think> 3' },
    ]);
    expect((await loadDemonstrations(await write('empty.jsonl', ['']))).demonstrations).toEqual([]);
  });

  it('skips each bad line with file, line, field and id, and keeps the good ones', async () => {
    const path = await write('bad.jsonl', [
      demo({ id: 'a' }),
      '{"prompt": "unterminated',
      '["an", "array"]',
      demo({ prompt: undefined }),
      demo({ completion: '  ' }),
      demo({ completion: 42 }),
      demo({ id: 7 }),
      demo({ id: '' }),
      demo({ id: 'b', completon: 'typo' }),
      demo({ id: 'a' }),
      demo({ id: 'line-12' }),
      demo({}),
      demo({ id: 'c' }),
    ]);
    const { demonstrations, skipped } = await loadDemonstrations(path);
    expect(demonstrations.map((d) => d.id)).toEqual(['a', 'line-12', 'c']);
    expect(skipped.map((s) => [s.line, s.field, s.recordId, s.message])).toEqual([
      [2, undefined, undefined, expect.stringMatching(/^not JSON: /)],
      [3, undefined, undefined, 'not a JSON object'],
      [4, 'prompt', undefined, 'missing prompt'],
      [5, 'completion', undefined, 'completion is empty'],
      [6, 'completion', undefined, 'completion is not a string'],
      [7, 'id', undefined, 'id is not a non-empty string'],
      [8, 'id', undefined, 'id is not a non-empty string'],
      [9, 'completon', 'b', 'unknown field completon'],
      [10, 'id', 'a', 'duplicate id a (first on line 1)'],
      // An explicit id that a later line's default id repeats: the later line is the duplicate.
      [12, 'id', 'line-12', 'duplicate id line-12 (first on line 11)'],
    ]);
    expect(skipped.every((s) => s.file === path)).toBe(true);
  });

  it('throws a DatasetError naming file and line when strict', async () => {
    const path = await write('strict.jsonl', [demo({ id: 'a' }), '', demo({ id: 'b', extra: true }), 'not json']);
    const load = loadDemonstrations(path, { strict: true });
    await expect(load).rejects.toBeInstanceOf(DatasetError);
    await expect(loadDemonstrations(path, { strict: true })).rejects.toThrow(`${path}:3 (b): unknown field extra`);
    const clean = await write('strict-clean.jsonl', [demo({ id: 'a' })]);
    expect((await loadDemonstrations(clean, { strict: true })).demonstrations).toHaveLength(1);
  });

  it('names a file that cannot be read', async () => {
    const missing = join(dir, 'missing.jsonl');
    await expect(loadDemonstrations(missing)).rejects.toThrow(DatasetError);
    await expect(loadDemonstrations(missing)).rejects.toThrow(`cannot read ${missing}`);
  });
});

describe('syntheticDemonstrations', () => {
  it('pairs the task prompt with the SFT completion, keyed by example id', () => {
    const examples = generateSyntheticExamples({ kind: 'generated', seed: 3, count: 40 });
    const options = { seed: 11, errorRate: 0.3 };
    const demonstrations = syntheticDemonstrations(examples, options);
    expect(demonstrations).toEqual(examples.map((e) => ({ id: e.id, prompt: syntheticTask.formatPrompt(e), completion: sftCompletion(e, options).text })));
    expect(new Set(demonstrations.map((d) => d.id)).size).toBe(examples.length);
    const wrong = demonstrations.filter((d, i) => !syntheticTask.answerCorrect!(syntheticTask.parseCompletion(d.completion).answer, examples[i]!)).length;
    expect(wrong).toBeGreaterThan(0);
    expect(wrong).toBeLessThan(examples.length);
    expect(syntheticDemonstrations([], options)).toEqual([]);
    expect(() => syntheticDemonstrations(examples, { seed: 1, errorRate: 2 })).toThrow(DatasetError);
  });
});
