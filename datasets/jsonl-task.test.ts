// The generic jsonl task: loading with mapped fields and every bad record named by line, stable ids, the
// prompt with or without the format instruction, the two answer checks, and the metrics against slow
// recomputations (ROUGE by brute-force n-gram counting, pass@k by enumerating every draw).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerMatches, jsonlTask, loadJsonlExamples, type JsonlExample, type JsonlTaskOptions } from './jsonl-task.js';
import { FORMAT_INSTRUCTION } from './task.js';

const OPTIONS: JsonlTaskOptions = { fields: { prompt: 'prompt', reference: 'reference', answer: 'answer', id: 'id' }, formatInstruction: null, answerCheck: 'exact', tolerance: 1e-4 };
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jsonl-task-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function file(name: string, lines: (string | object)[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return path;
}

describe('loading', () => {
  it('reads prompt, reference, answer and id, keeps other fields out, and names every bad record by line', async () => {
    const path = await file('mixed.jsonl', [
      { prompt: 'P1', reference: 'R1', answer: 'A', id: 'one', extra: [1, 2] },
      { prompt: 'P2', reference: 'R2', answer: 42 },
      '',
      { prompt: 'P3' },
      { prompt: 'P4', reference: '   ' },
      '{"prompt": "P5", ',
      { prompt: 'P6', reference: 'R6', id: 'one' },
      { prompt: 7, reference: 'R7' },
      { prompt: 'P2', reference: 'R2' },
      '[1, 2]',
      { prompt: 'P8', reference: 'R8', answer: '' },
    ]);
    const { examples, skipped } = await loadJsonlExamples(path, OPTIONS);
    expect(examples.map((e) => [e.id.length > 8 ? 'hash' : e.id, e.prompt, e.reference, e.answer, e.origin.line])).toEqual([
      ['one', 'P1', 'R1', 'A', 1],
      ['hash', 'P2', 'R2', '42', 2],
    ]);
    expect(examples[0]).not.toHaveProperty('extra');
    expect(skipped.map((s) => [s.line, s.message])).toEqual([
      [4, 'missing field "reference"'],
      [5, 'field "reference" is empty'],
      [6, expect.stringMatching(/^not JSON: /)],
      [7, 'id "one" is used before, on line 1'],
      [8, 'field "prompt" is a number, not text'],
      [9, 'repeats line 2 (same prompt and reference)'],
      [10, 'not a JSON object'],
      [11, 'field "answer" must be non-empty text or a number'],
    ]);
    expect(skipped.every((s) => s.file === path)).toBe(true);
  });

  it('maps field names, and an id derived from the content does not depend on the line', async () => {
    const mapped = { ...OPTIONS, fields: { prompt: 'question', reference: 'gold', answer: 'final', id: 'key' } };
    const a = await file('a.jsonl', [{ question: 'Q1', gold: 'G1' }, { question: 'Q2', gold: 'G2', final: '3', key: 9 }]);
    const b = await file('b.jsonl', [{ question: 'Q0', gold: 'G0' }, { question: 'Q1', gold: 'G1' }]);
    const first = (await loadJsonlExamples(a, mapped)).examples;
    const second = (await loadJsonlExamples(b, mapped)).examples;
    expect(first[1]).toMatchObject({ id: '9', prompt: 'Q2', reference: 'G2', answer: '3' });
    expect(second[1]!.id).toBe(first[0]!.id);
    expect(second[0]!.id).not.toBe(first[0]!.id);
    // With the default names the mapped records have no prompt.
    expect((await loadJsonlExamples(a, OPTIONS)).skipped.map((s) => s.message)).toEqual(['missing field "prompt"', 'missing field "prompt"']);
  });

  it("refuses a non-numeric answer only under the 'numeric' check", async () => {
    const path = await file('answers.jsonl', [{ prompt: 'P', reference: 'R', answer: 'about ten' }, { prompt: 'Q', reference: 'R', answer: '1,250.5' }]);
    expect((await loadJsonlExamples(path, OPTIONS)).skipped).toEqual([]);
    const numeric = await loadJsonlExamples(path, { ...OPTIONS, answerCheck: 'numeric' });
    expect(numeric.skipped.map((s) => [s.line, s.field, s.message])).toEqual([[1, 'answer', `field "answer" is "about ten", not a number (data.jsonl.answerCheck is 'numeric')`]]);
    expect(numeric.examples.map((e) => e.answer)).toEqual(['1,250.5']);
  });

  it('strict loading stops at the first bad record with file and line', async () => {
    const path = await file('strict.jsonl', [{ prompt: 'P', reference: 'R' }, { prompt: 'P2' }]);
    await expect(jsonlTask(OPTIONS).load({ kind: 'file', path }, { strict: true })).rejects.toThrow(`${path}:2: missing field "reference"`);
  });
});

describe('prompt and answers', () => {
  const example: JsonlExample = { id: 'x', prompt: 'Summarise the text.', reference: 'A summary.', answer: '12.5', origin: { file: 'f', line: 1 } };

  it('states the completion format as the built-in tasks do, a custom one, or none', () => {
    expect(jsonlTask(OPTIONS).formatPrompt(example)).toBe(`Summarise the text.\n\n${FORMAT_INSTRUCTION}`);
    expect(jsonlTask({ ...OPTIONS, formatInstruction: 'Answer briefly.' }).formatPrompt(example)).toBe('Summarise the text.\n\nAnswer briefly.');
    expect(jsonlTask({ ...OPTIONS, formatInstruction: '' }).formatPrompt(example)).toBe('Summarise the text.');
    expect(jsonlTask(OPTIONS).referenceOutcome(example)).toBe('A summary.');
  });

  it("'exact' normalises whitespace and case only", () => {
    expect(answerMatches('  New\n  York ', 'new york', 'exact', 0)).toBe(true);
    expect(answerMatches('New York.', 'new york', 'exact', 0)).toBe(false);
    expect(answerMatches('NewYork', 'new york', 'exact', 0)).toBe(false);
  });

  it("'numeric' takes the answer's last number within a relative tolerance", () => {
    expect(answerMatches('so it is 12.5', '12.5', 'numeric', 0)).toBe(true);
    expect(answerMatches('12.5 or 13', '12.5', 'numeric', 1e-4)).toBe(false);
    expect(answerMatches('1,000.09', '1000', 'numeric', 1e-4)).toBe(true);
    expect(answerMatches('1,000.11', '1000', 'numeric', 1e-4)).toBe(false);
    expect(answerMatches('-3', '−3', 'numeric', 0)).toBe(true);
    expect(answerMatches('0.0001', '0', 'numeric', 0.5)).toBe(false);
    expect(answerMatches('no number', '5', 'numeric', 1)).toBe(false);
  });

  it("answers are checked unless the check is 'none'; a record without an answer is never correct", () => {
    expect('answerCorrect' in jsonlTask({ ...OPTIONS, answerCheck: 'none' })).toBe(false);
    const numeric = jsonlTask({ ...OPTIONS, answerCheck: 'numeric' });
    expect(numeric.answerCorrect!('12.50', example)).toBe(true);
    expect(numeric.answerCorrect!('12.50', { ...example, answer: undefined })).toBe(false);
  });
});

/** ROUGE-N F1 by brute force: every distinct n-gram's clipped count, from scratch. */
function slowRougeN(pred: string, ref: string, n: number): number {
  const toks = (s: string) => s.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  const grams = (t: string[]) => t.slice(0, Math.max(0, t.length - n + 1)).map((_, i) => JSON.stringify(t.slice(i, i + n)));
  const p = grams(toks(pred));
  const r = grams(toks(ref));
  let overlap = 0;
  for (const g of new Set(p)) overlap += Math.min(p.filter((x) => x === g).length, r.filter((x) => x === g).length);
  if (overlap === 0) return 0;
  return (2 * (overlap / p.length) * (overlap / r.length)) / (overlap / p.length + overlap / r.length);
}

/** pass@k by enumerating every k-subset of the n samples. */
function slowPassAtK(correct: boolean[], k: number): number {
  let hits = 0;
  let total = 0;
  const pick = (start: number, left: number, any: boolean): void => {
    if (left === 0) {
      total++;
      if (any) hits++;
      return;
    }
    for (let i = start; i < correct.length; i++) pick(i + 1, left - 1, any || correct[i]!);
  };
  pick(0, k, false);
  return hits / total;
}

describe('metrics', () => {
  const examples: JsonlExample[] = [
    { id: 'a', prompt: 'p', reference: 'the cat sat on the mat', answer: '4', origin: { file: 'f', line: 1 } },
    { id: 'b', prompt: 'p', reference: 'a dog ran in the park today', origin: { file: 'f', line: 2 } },
    { id: 'c', prompt: 'p', reference: 'four legs', answer: '4.0', origin: { file: 'f', line: 3 } },
  ];
  const predictions = [
    { exampleId: 'a', completions: ['<think>x</think> the cat sat on a mat 4', '<think>y</think> 5', 'no think 4'] },
    { exampleId: 'b', completions: ['<think>z</think> the dog ran in a park', '<think>z</think> dog', '<think>z</think> park'] },
    { exampleId: 'c', completions: ['<think>w</think> 3', '<think>w</think> it has 4', '<think>w</think> 4'] },
  ];

  it('ROUGE-1/2/L, lengths and the malformed share over all examples; accuracy and pass@k over those with answers', () => {
    const m = jsonlTask({ ...OPTIONS, answerCheck: 'numeric' }).metrics(predictions, examples);
    const firsts = ['the cat sat on a mat 4', 'the dog ran in a park', '3'];
    const mean = (f: (answer: string, i: number) => number) => firsts.reduce((s, a, i) => s + f(a, i), 0) / 3;
    expect(m.rouge1F1).toBeCloseTo(mean((a, i) => slowRougeN(a, examples[i]!.reference, 1)), 12);
    expect(m.rouge2F1).toBeCloseTo(mean((a, i) => slowRougeN(a, examples[i]!.reference, 2)), 12);
    expect(m.rouge2F1).toBeGreaterThan(0);
    expect(m.rouge2F1).toBeLessThan(m.rouge1F1!);
    expect(m.answerWords).toBeCloseTo((7 + 6 + 1) / 3, 12);
    expect(m.lengthRatio).toBeCloseTo((7 / 6 + 6 / 7 + 1 / 2) / 3, 12);
    expect(m.malformed).toBeCloseTo(1 / 9, 12);
    // a: first correct (4), c: first wrong (3); b has no answer.
    expect(m.accuracy).toBe(0.5);
    // a's third completion has no </think>, so no answer.
    const correct = { a: [true, false, false], c: [false, true, true] };
    expect(m['pass@1']).toBeCloseTo((slowPassAtK(correct.a, 1) + slowPassAtK(correct.c, 1)) / 2, 12);
    expect(m['pass@2']).toBeCloseTo((slowPassAtK(correct.a, 2) + slowPassAtK(correct.c, 2)) / 2, 12);
    expect(m['pass@3']).toBe(1);
  });

  it("reports no accuracy when nothing is checked", () => {
    const none = jsonlTask({ ...OPTIONS, answerCheck: 'none' }).metrics(predictions, examples);
    expect(Object.keys(none).sort()).toEqual(['answerWords', 'lengthRatio', 'malformed', 'rouge1F1', 'rouge2F1', 'rougeLF1']);
    const noAnswers = jsonlTask(OPTIONS).metrics([predictions[1]!], examples);
    expect(noAnswers.accuracy).toBeUndefined();
  });
});
