// ParaRev: loading the shared files in place (counts, field values, merging of the judgement file),
// skip reports and strict mode on temp files, the prompt, and the metrics on hand-made predictions.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadPararev, PARAREV_FILES, pararevJudgeItems, pararevSource, pararevTask } from './pararev.js';
import type { PararevExample } from './pararev.js';
import { sharedDatasetFile } from './paths.js';
import { describeWithDataset } from './testing/shared-datasets.js';
import { DatasetError, FORMAT_INSTRUCTION } from './task.js';

const folder = sharedDatasetFile('pararev');
const subset = sharedDatasetFile('pararev', PARAREV_FILES[0]);
const judgements = sharedDatasetFile('pararev', PARAREV_FILES[1]);

const FIRST_ID = '3686sm4Cs.AJMXMDLVn.03#annot_2';

describeWithDataset('loadPararev on the shared files', [folder, subset, judgements], () => {
  it('reads the task file: 44 items over 43 paragraphs, no skips', async () => {
    const { examples, skipped } = await loadPararev({ kind: 'file', path: subset.path });
    expect(skipped).toEqual([]);
    expect(examples).toHaveLength(44);
    expect(new Set(examples.map((e) => e.paragraphId)).size).toBe(43);
    expect(new Set(examples.map((e) => e.id)).size).toBe(44);
    const first = examples[0]!;
    expect(first.id).toBe(FIRST_ID);
    expect(first.paragraphId).toBe('3686sm4Cs.AJMXMDLVn.03');
    expect(first.annotation).toBe('annot_2');
    expect(first.annotator).toBe('annotator_07');
    expect(first.labels).toEqual(['Concision', 'Rewriting_light']);
    expect(first.instruction).toBe('Make this paragraph a bit more concise.');
    expect(first.original.startsWith('In this work, we introduced SuperWeight Ensembles,')).toBe(true);
    expect(first.revised.startsWith('We introduce SuperWeight Ensembles,')).toBe(true);
    expect(first.modelRevisions).toEqual({});
    expect(first.answer).toBeUndefined();
    // The one paragraph annotated twice keeps two examples with different ids.
    expect(examples.filter((e) => e.paragraphId === 'nkOpNqg-ip.OwJsIhe_p.00').map((e) => e.annotation).sort()).toEqual(['annot_1', 'annot_2']);
    const labelCounts = new Map<string, number>();
    for (const l of examples.flatMap((e) => e.labels)) labelCounts.set(l, (labelCounts.get(l) ?? 0) + 1);
    expect(Object.fromEntries(labelCounts)).toEqual({ Rewriting_light: 19, Rewriting_medium: 18, Concision: 17, Content_deletion: 6 });
  });

  it('merges the 129 judgement lines into the same 44 items with the models’ revisions', async () => {
    const { examples, skipped } = await loadPararev({ kind: 'file', path: judgements.path });
    expect(skipped).toEqual([]);
    expect(examples).toHaveLength(44);
    expect(examples[0]!.id).toBe('nCTSF9BQJ.DGhBYSP_sR.00#annot_2');
    const counts = examples.map((e) => Object.keys(e.modelRevisions).length);
    expect(counts.filter((c) => c === 6)).toHaveLength(42);
  });

  it('reads the folder (both files) with ids stable across loads', async () => {
    const a = await loadPararev(pararevSource());
    const b = await pararevTask.load(pararevSource());
    expect(a.skipped).toEqual([]);
    expect(a.examples).toHaveLength(44);
    expect(a.examples.map((e) => e.id)).toEqual(b.examples.map((e) => e.id));
    const first = a.examples.find((e) => e.id === FIRST_ID)!;
    expect(first.labels).toEqual(['Concision', 'Rewriting_light']);
    expect(Object.keys(first.modelRevisions).sort()).toEqual([
      'Meta-Llama-3-70B-Instruct',
      'Meta-Llama-3-8B-Instruct',
      'Mistral-7B-Instruct-v0.2',
      'coedit-xl',
      'gpt-4o',
      'gpt-4o-mini',
    ]);
    expect(a.examples.every((e) => e.revised.trim() !== '' && e.original !== e.revised)).toBe(true);
  });
});

describe('loadPararev on bad input', () => {
  let dir = '';
  const good = (id: string, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ id_paragraph: id, pararev_annot: 'annot_1', labels: ['Concision'], instruction: 'Shorten it.', original_paragraph: 'A long text.', reference_paragraph: 'Short.', ...extra });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pararev-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function write(name: string, lines: string[]): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, lines.join('\n') + '\n');
    return path;
  }

  it('skips bad lines with file, line, id and field, keeps loading and reports the count', async () => {
    const path = await write('bad.jsonl', [
      good('p1'),
      '{not json',
      good('p2', { reference_paragraph: '   ' }),
      '',
      good('p3', { instruction: undefined }),
      JSON.stringify({ instruction: 'x' }),
      good('p4', { labels: 'Concision' }),
      '[1, 2]',
      good('p5', { model_A: 'gpt-4o' }),
      good('p1', { original_paragraph: 'Something else.' }),
      good('p6', { pararev_annot: undefined, labels: undefined, model_A: 'm1', model_A_paragraph: 'M1 text.', model_B: 'm2', model_B_paragraph: 'M2 text.' }),
      good('p6', { pararev_annot: undefined, model_B: 'm3', model_B_paragraph: 'M3 text.' }),
      good('p7', { model_B_paragraph: 'orphan' }),
      good('p8', { pararev_annotator: 7 }),
    ]);
    const warn = vi.fn();
    const { examples, skipped } = await loadPararev({ kind: 'file', path }, { warn });
    expect(examples.map((e) => e.id)).toEqual(['p1#annot_1', 'p6']);
    expect(examples[1]!.labels).toEqual([]);
    expect(examples[1]!.annotation).toBeUndefined();
    expect(examples[1]!.modelRevisions).toEqual({ m1: 'M1 text.', m2: 'M2 text.', m3: 'M3 text.' });
    expect(skipped.map((s) => [s.line, s.recordId, s.field])).toEqual([
      [2, undefined, undefined],
      [3, 'p2#annot_1', 'reference_paragraph'],
      [5, 'p3#annot_1', 'instruction'],
      [6, undefined, 'id_paragraph'],
      [7, 'p4#annot_1', 'labels'],
      [8, undefined, undefined],
      [9, 'p5#annot_1', 'model_A_paragraph'],
      [10, 'p1#annot_1', 'original'],
      [13, 'p7#annot_1', 'model_B'],
      [14, 'p8#annot_1', 'pararev_annotator'],
    ]);
    expect(skipped.every((s) => s.file === path)).toBe(true);
    expect(skipped[0]!.message).toMatch(/^not JSON/);
    expect(skipped[1]!.message).toBe('reference_paragraph is empty');
    expect(skipped[2]!.message).toBe('missing instruction');
    expect(skipped[5]!.message).toBe('not a JSON object');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn).toHaveBeenCalledWith('pararev: skipped 10 bad record(s) in bad.jsonl');
  });

  it('reports through console.warn by default, and not at all for a clean file', async () => {
    const spy = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      await loadPararev({ kind: 'file', path: await write('clean.jsonl', [good('a')]) });
      expect(spy).not.toHaveBeenCalled();
      await loadPararev({ kind: 'file', path: await write('one-bad.jsonl', [good('a'), good('b', { original_paragraph: 3 })]) });
      expect(spy).toHaveBeenCalledWith('pararev: skipped 1 bad record(s) in one-bad.jsonl');
    } finally {
      spy.mockRestore();
    }
  });

  it('strict mode throws a DatasetError at the first bad line', async () => {
    const path = await write('strict.jsonl', [good('a'), good('b', { reference_paragraph: '' }), '{oops']);
    const load = pararevTask.load({ kind: 'file', path }, { strict: true });
    await expect(load).rejects.toBeInstanceOf(DatasetError);
    await expect(pararevTask.load({ kind: 'file', path }, { strict: true })).rejects.toThrow(`${path}:2 (b#annot_1): reference_paragraph is empty`);
  });

  it('names a file that cannot be read, and rejects other sources', async () => {
    const missing = join(dir, 'nope.jsonl');
    await expect(loadPararev({ kind: 'file', path: missing })).rejects.toThrow(DatasetError);
    await expect(loadPararev({ kind: 'file', path: missing })).rejects.toThrow(`cannot read ${missing}`);
    // A folder without the two ParaRev files names the first one missing.
    await expect(loadPararev({ kind: 'file', path: dir })).rejects.toThrow(`cannot read ${join(dir, PARAREV_FILES[0])}: not in the folder`);
    await expect(loadPararev({ kind: 'generated', seed: 1, count: 2 })).rejects.toThrow('pararev reads files; got a "generated" source');
  });

  it('reads a folder holding both files, in order', async () => {
    const sub = join(dir, 'both');
    await rm(sub, { recursive: true, force: true });
    await mkdir(sub);
    await writeFile(join(sub, PARAREV_FILES[0]), good('x') + '\n');
    await writeFile(join(sub, PARAREV_FILES[1]), good('x', { model_A: 'm', model_A_paragraph: 'M.' }) + '\n' + good('y') + '\n');
    const { examples } = await loadPararev({ kind: 'file', path: sub });
    expect(examples.map((e) => [e.id, e.modelRevisions])).toEqual([
      ['x#annot_1', { m: 'M.' }],
      ['y#annot_1', {}],
    ]);
  });

  it('names a listed file that cannot be read', async () => {
    const sub = join(dir, 'unreadable');
    await mkdir(join(sub, PARAREV_FILES[0]), { recursive: true });
    await writeFile(join(sub, PARAREV_FILES[1]), '');
    await expect(loadPararev({ kind: 'file', path: sub })).rejects.toThrow(`cannot read ${join(sub, PARAREV_FILES[0])}`);
  });
});

const example: PararevExample = {
  id: 'p#annot_1',
  paragraphId: 'p',
  annotation: 'annot_1',
  instruction: 'Make it more concise.',
  labels: ['Concision', 'Rewriting_light'],
  original: 'We  did a very long and quite wordy experiment here.',
  revised: 'We did a short experiment.',
  modelRevisions: { 'gpt-4o': 'We ran a brief experiment.' },
};
const other: PararevExample = { ...example, id: 'q', paragraphId: 'q', labels: [], original: 'One two three.', revised: 'One two three four five six.', modelRevisions: {} };

describe('pararevTask prompt and parsing', () => {
  it('states the instruction, the labels and the original, then the format', () => {
    const prompt = pararevTask.formatPrompt(example);
    expect(prompt).toContain('Revision instruction: Make it more concise.');
    expect(prompt).toContain('Kind of revision: Concision, Rewriting light');
    expect(prompt).toContain(`Original paragraph:\n${example.original}`);
    expect(prompt.endsWith(FORMAT_INSTRUCTION)).toBe(true);
    expect(prompt.indexOf('instruction')).toBeLessThan(prompt.indexOf(example.original));
    expect(pararevTask.formatPrompt(other)).not.toContain('Kind of revision');
  });

  it('uses the authors’ revision as the reference and the think/answer format', () => {
    expect(pararevTask.name).toBe('pararev');
    expect(pararevTask.referenceOutcome(example)).toBe('We did a short experiment.');
    expect('answerCorrect' in pararevTask).toBe(false); // open-ended: no answer to check, so no correctness reward
    expect(pararevTask.parseCompletion('<think>cut words</think> We did a short experiment.')).toEqual({ chain: '<think>cut words</think>', reasoning: 'cut words', answer: 'We did a short experiment.', wellFormed: true });
  });
});

describe('pararevTask.metrics', () => {
  it('is 1 for ROUGE when the answer is the reference', () => {
    const m = pararevTask.metrics([{ exampleId: example.id, completions: ['<think>ok</think>We did a short experiment.', 'ignored'] }], [example]);
    expect(m).toEqual({ rouge1F1: 1, rougeLF1: 1, lengthRatio: 1, unchanged: 0, malformed: 0 });
  });

  it('detects unchanged paragraphs up to whitespace, length ratios and malformed completions', () => {
    const m = pararevTask.metrics(
      [
        // The original, re-wrapped: unchanged; 10 words / 5 reference words.
        { exampleId: example.id, completions: ['<think>nothing to do</think>\nWe did a very long and\nquite wordy experiment here.'] },
        // Malformed (no think block): without a </think> all of it is chain and the answer is empty, 0 words.
        { exampleId: other.id, completions: ['One two three'] },
      ],
      [example, other],
    );
    expect(m.unchanged).toBe(0.5);
    expect(m.malformed).toBe(0.5);
    expect(m.lengthRatio).toBeCloseTo((10 / 5 + 0) / 2, 12);
    // Second item: an empty answer → F1 0. First item: 4 of 5 reference tokens (we did a experiment)
    // among 10 predicted: P 0.4, R 0.8 → F1 8/15; LCS is the same 4 tokens.
    expect(m.rouge1F1).toBeCloseTo((8 / 15 + 0) / 2, 12);
    expect(m.rougeLF1).toBeCloseTo((8 / 15 + 0) / 2, 12);
  });

  it('counts a prediction without completions as an empty, malformed answer', () => {
    expect(pararevTask.metrics([{ exampleId: other.id, completions: [] }], [other])).toEqual({ rouge1F1: 0, rougeLF1: 0, lengthRatio: 0, unchanged: 0, malformed: 1 });
  });

  it('is all 0 without predictions and rejects unknown ids', () => {
    expect(pararevTask.metrics([], [example])).toEqual({ rouge1F1: 0, rougeLF1: 0, lengthRatio: 0, unchanged: 0, malformed: 0 });
    expect(() => pararevTask.metrics([{ exampleId: 'nope', completions: ['x'] }], [example])).toThrow('pararev: prediction for unknown example id "nope"');
  });
});

describe('pararevJudgeItems', () => {
  it('pairs each answer with the baseline model’s revision and lists examples without one', () => {
    const { items, exampleIds, missingBaseline } = pararevJudgeItems(
      [
        { exampleId: example.id, completions: ['<think>t</think>We did it.'] },
        { exampleId: other.id, completions: ['x'] },
      ],
      [example, other],
      'gpt-4o',
    );
    expect(items).toEqual([{ instruction: example.instruction, original: example.original, golden: example.revised, candidate: 'We did it.', baseline: 'We ran a brief experiment.' }]);
    expect(exampleIds).toEqual([example.id]);
    expect(missingBaseline).toEqual([other.id]);
    expect(pararevJudgeItems([{ exampleId: example.id, completions: [] }], [example], 'gpt-4o').items[0]!.candidate).toBe('');
    expect(() => pararevJudgeItems([{ exampleId: 'z', completions: [] }], [example], 'gpt-4o')).toThrow('unknown example id "z"');
  });
});
