// Tests for the FinQA task: loading both schemas from the shared files and temp files, skip reporting,
// the prompt, the reference outcome, lenient answer matching on real gold answers, the task's answer check
// against its metrics, and the metrics.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { finqaAnswerCorrect, finqaExactMatch, finqaTask, formatNumber, lastNumber, loadFinqa } from './finqa.js';
import type { FinqaExample } from './finqa.js';
import { sharedDatasetFile } from './paths.js';
import { describeWithDataset } from './testing/shared-datasets.js';
import { DatasetError, FORMAT_INSTRUCTION } from './task.js';

const dev = sharedDatasetFile('finqa', 'dev_200.json');
const train = sharedDatasetFile('finqa', 'train_100.json');
const predictionsFile = sharedDatasetFile('finqa', 'example_predictions.json');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'finqa-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function byId(examples: readonly FinqaExample[], id: string): FinqaExample {
  const example = examples.find((e) => e.id === id);
  if (!example) throw new Error(`no example ${id}`);
  return example;
}

const think = (answer: string): string => `<think>reasoning</think> ${answer}`;

describeWithDataset('FinQA shared files', [dev, train, predictionsFile], () => {
  let devExamples: FinqaExample[];
  let trainExamples: FinqaExample[];
  beforeAll(async () => {
    const d = await finqaTask.load({ kind: 'file', path: dev.path });
    const t = await finqaTask.load({ kind: 'file', path: train.path }, { strict: true });
    expect(d.skipped).toEqual([]);
    expect(t.skipped).toEqual([]);
    devExamples = d.examples;
    trainExamples = t.examples;
  });
  const gold = (id: string): number | string => byId([...devExamples, ...trainExamples], id).answer;

  it('loads every record of both subsets with unique ids', () => {
    expect(devExamples).toHaveLength(200);
    expect(trainExamples).toHaveLength(100);
    const ids = new Set([...devExamples, ...trainExamples].map((e) => e.id));
    expect(ids.size).toBe(300);
    // exe_ans is a number or yes/no: 10 yes/no golds in dev, 4 in train.
    expect(devExamples.filter((e) => typeof e.answer === 'string')).toHaveLength(10);
    expect(trainExamples.filter((e) => typeof e.answer === 'string')).toHaveLength(4);
    for (const e of [...devExamples, ...trainExamples]) expect(typeof e.answer === 'number' || e.answer === 'yes' || e.answer === 'no').toBe(true);
  });

  it('reads the original schema fields, with exe_ans as the gold', () => {
    const first = devExamples[0]!;
    expect(first.id).toBe('V/2008/page_17.pdf-1');
    expect(first.question).toBe('what is the average payment volume per transaction for american express?');
    expect(first.answer).toBe(127.4);
    expect(first.program).toBe('divide(637, const_5)');
    expect(first.preText).toHaveLength(44);
    expect(first.postText).toHaveLength(21);
    expect(first.table[1]).toEqual(['visa inc. ( 1 )', '$ 2457', '$ 3822', '50.3', '1592']);
    const t = trainExamples[0]!;
    expect(t.id).toBe('ETR/2009/page_107.pdf-2');
    expect(t.answer).toBe(0.34719); // qa.answer is "34.7%"
    expect(t.program).toBe('divide(114400, 329500)');
    // The human answer "44%" disagrees with the executed program: exe_ans wins.
    expect(gold('STT/2008/page_83.pdf-2')).toBe(1.25);
  });

  it('accepts every gold as its own reference outcome, leniently and exactly', () => {
    for (const e of [...devExamples, ...trainExamples]) {
      const ref = finqaTask.referenceOutcome(e);
      expect(finqaAnswerCorrect(ref, e.answer), e.id).toBe(true);
      expect(finqaExactMatch(ref, e.answer), e.id).toBe(true);
    }
  });

  it('formats the prompt with the text, table rows, question and format instruction', () => {
    const e = devExamples[0]!;
    const prompt = finqaTask.formatPrompt(e);
    expect(prompt).toContain('visa inc. ( 1 ) | $ 2457 | $ 3822 | 50.3 | 1592\nmastercard | 1697 | 2276 | 27.0 | 916');
    expect(prompt).toContain(`Question: ${e.question}`);
    expect(prompt).toContain(e.preText[0]!);
    expect(prompt).toContain(e.postText.at(-1)!);
    expect(prompt.endsWith(FORMAT_INSTRUCTION)).toBe(true);
    expect(prompt.indexOf(e.preText[0]!)).toBeLessThan(prompt.indexOf('Table:'));
    expect(prompt.indexOf('Table:')).toBeLessThan(prompt.indexOf(e.postText.at(-1)!));
    expect(prompt.indexOf(e.postText.at(-1)!)).toBeLessThan(prompt.indexOf('Question:'));
  });

  it('writes reference outcomes without float noise', () => {
    expect(finqaTask.referenceOutcome(devExamples[0]!)).toBe('127.4');
    expect(finqaTask.referenceOutcome(byId(devExamples, 'JKHY/2014/page_30.pdf-2'))).toBe('0.1685');
    expect(finqaTask.referenceOutcome(byId(devExamples, 'VTR/2007/page_47.pdf-1'))).toBe('138326479');
    expect(finqaTask.referenceOutcome(byId(devExamples, 'PNC/2009/page_46.pdf-3'))).toBe('no');
    expect(finqaTask.referenceOutcome(byId(trainExamples, 'AWK/2012/page_12.pdf-2'))).toBe('36003776400000');
  });

  it('matches percent forms of a ratio gold', () => {
    const g = gold('JKHY/2014/page_30.pdf-2'); // 0.1685 ("16.85%")
    expect(g).toBe(0.1685);
    for (const p of ['16.85%', '16.85', '0.1685', 'about 16.9%', '17%']) expect(finqaAnswerCorrect(p, g), p).toBe(true);
    expect(finqaAnswerCorrect('18%', g)).toBe(false);
    expect(finqaAnswerCorrect('1685', g)).toBe(false);
    // A gold already in percent points (3.8 for "3.8%") also accepts the ratio form.
    const points = gold('ZBH/2003/page_40.pdf-1');
    expect(points).toBe(3.8);
    expect(finqaAnswerCorrect('3.8%', points)).toBe(true);
    expect(finqaAnswerCorrect('0.038', points)).toBe(true);
  });

  it('matches negative golds in every sign notation', () => {
    const g = gold('CDNS/2012/page_30.pdf-2'); // -31.86
    expect(g).toBe(-31.86);
    for (const p of ['-31.86', '\u221231.86', '(31.86)', '($31.86)', 'a decrease of -31.86%', '-$31.86', '$-31.86']) expect(finqaAnswerCorrect(p, g), p).toBe(true);
    expect(finqaAnswerCorrect('31.86', g)).toBe(false);
    const change = gold('TROW/2010/page_22.pdf-1'); // -0.48214 ("-48%")
    expect(finqaAnswerCorrect('-48%', change)).toBe(true);
    expect(finqaAnswerCorrect('48%', change)).toBe(false);
  });

  it('matches large numbers with thousands separators and currency', () => {
    const g = gold('MA/2008/page_126.pdf-2'); // 1331862
    expect(g).toBe(1331862);
    for (const p of ['$1,331,862', '1,331,862.', 'The total is $ 1331862 thousand.', '1.331862e6']) expect(finqaAnswerCorrect(p, g), p).toBe(true);
    expect(finqaAnswerCorrect('$1,331', g)).toBe(false);
    expect(finqaAnswerCorrect('$138,326,479', gold('VTR/2007/page_47.pdf-1'))).toBe(true);
  });

  it('compares yes/no golds with the first word of the answer', () => {
    const no = gold('PNC/2009/page_46.pdf-3');
    const yes = gold('UNP/2011/page_76.pdf-2');
    expect([no, yes]).toEqual(['no', 'yes']);
    expect(finqaAnswerCorrect('No.', no)).toBe(true);
    expect(finqaAnswerCorrect('NO, it decreased', no)).toBe(true);
    expect(finqaAnswerCorrect('Yes', yes)).toBe(true);
    expect(finqaAnswerCorrect('yes!', yes)).toBe(true);
    expect(finqaAnswerCorrect('no', yes)).toBe(false);
    expect(finqaAnswerCorrect('I would say yes', yes)).toBe(false);
    expect(finqaAnswerCorrect('1', yes)).toBe(false);
    expect(finqaAnswerCorrect('', yes)).toBe(false);
  });

  it('puts the tolerance boundary at exactly 2%', () => {
    const g = gold('V/2008/page_17.pdf-1'); // 127.4
    expect(finqaAnswerCorrect('129.948', g)).toBe(true); // +2.00%
    expect(finqaAnswerCorrect('124.852', g)).toBe(true); // −2.00%
    expect(finqaAnswerCorrect('129.96074', g)).toBe(false); // +2.01%
    expect(finqaAnswerCorrect('124.83926', g)).toBe(false); // −2.01%
    expect(finqaAnswerCorrect('129.96074', g, { relativeTolerance: 0.03 })).toBe(true);
    expect(finqaAnswerCorrect('127.41', g, { relativeTolerance: 0 })).toBe(false);
    expect(finqaAnswerCorrect('127.4', g, { relativeTolerance: 0 })).toBe(true);
  });

  it('takes the last number in the answer', () => {
    const g = gold('STT/2011/page_83.pdf-1'); // 114
    expect(g).toBe(114);
    expect(finqaAnswerCorrect('from 100 to 114', g)).toBe(true);
    expect(finqaAnswerCorrect('from 114 to 120', g)).toBe(false);
    expect(finqaAnswerCorrect('The difference is 303 - 189 = 114.', g)).toBe(true);
    expect(finqaAnswerCorrect('2010-2011: 114 million dollars', g)).toBe(true);
    expect(lastNumber('from 12 to 15')).toBe(15);
    expect(lastNumber('2019-2020')).toBe(2020);
  });

  it('returns false, never throws, when a numeric gold meets an answer without a number', () => {
    for (const p of ['', 'unknown', 'n/a', 'yes', '<think>']) expect(finqaAnswerCorrect(p, gold('V/2008/page_17.pdf-1')), p).toBe(false);
  });

  it('accepts text around the number', () => {
    const g = gold('V/2008/page_17.pdf-1');
    expect(finqaAnswerCorrect('The answer is $127.40.', g)).toBe(true);
    expect(finqaAnswerCorrect('approximately 127.4 dollars per transaction', g)).toBe(true);
  });

  it('exact match rounds to 5 decimals without tolerance or rescaling', () => {
    const g = gold('AMAT/2013/page_18.pdf-2'); // 7.22222
    expect(g).toBe(7.22222);
    expect(finqaExactMatch('7.222222', g)).toBe(true);
    expect(finqaExactMatch('7.22', g)).toBe(false);
    expect(finqaAnswerCorrect('7.22', g)).toBe(true);
    expect(finqaExactMatch('16.85%', gold('JKHY/2014/page_30.pdf-2'))).toBe(false);
    expect(finqaExactMatch('no', gold('PNC/2009/page_46.pdf-3'))).toBe(true);
  });

  it('computes metrics over real examples', () => {
    const a = byId(devExamples, 'V/2008/page_17.pdf-1'); // 127.4
    const b = byId(devExamples, 'PNC/2009/page_46.pdf-3'); // no
    const c = byId(devExamples, 'JKHY/2014/page_30.pdf-2'); // 0.1685
    const m = finqaTask.metrics(
      [
        // Without a </think> nothing is an answer: the number in this text is part of its chain.
        { exampleId: a.id, completions: [think('127.4'), think('5'), 'no think block 127.4'] },
        { exampleId: b.id, completions: [think('yes'), think('no'), think('No.')] },
        { exampleId: c.id, completions: [think('16.85%'), '<think>a</think>', think('0.1685')] },
      ],
      devExamples,
    );
    expect(m.accuracy).toBeCloseTo(2 / 3, 12);
    expect(m.exactMatch).toBeCloseTo(1 / 3, 12); // only 127.4; "16.85%" is not 0.1685 to 5 dp
    // c per example: 1, 2, 2 of n = 3 → pass@1 = 1/3, 2/3, 2/3; pass@2 = 1 − C(2, 2)/C(3, 2) = 2/3, then 1 − C(1, 2)/C(3, 2) = 1; pass@3 = 1 each.
    expect(m['pass@1']).toBeCloseTo(5 / 9, 12);
    expect(m['pass@2']).toBeCloseTo(8 / 9, 12);
    expect(m['pass@3']).toBe(1);
    expect(m.malformed).toBeCloseTo(2 / 9, 12);
    expect(Object.keys(m).sort()).toEqual(['accuracy', 'exactMatch', 'malformed', 'pass@1', 'pass@2', 'pass@3']);
  });

  it('reports pass@1 only for single samples, and rejects unknown ids', () => {
    const e = devExamples[0]!;
    const m = finqaTask.metrics([{ exampleId: e.id, completions: [think('127.4')] }], devExamples);
    expect(m).toEqual({ accuracy: 1, exactMatch: 1, 'pass@1': 1, malformed: 0 });
    expect(() => finqaTask.metrics([{ exampleId: 'NOPE/2000/page_1.pdf-1', completions: ['x'] }], devExamples)).toThrow(/NOPE\/2000\/page_1\.pdf-1/);
    expect(() => finqaTask.metrics([{ exampleId: e.id, completions: [] }], devExamples)).toThrow(/no completions/);
    expect(() => finqaTask.metrics([], devExamples)).toThrow(/no predictions/);
  });

  it('example_predictions.json holds program predictions for test ids only', async () => {
    // The official example is a list of {id, predicted: program tokens + "EOF"} for test ids; no gold for
    // those ids is in this folder, so its correctness cannot be checked here, only its shape and that
    // scoring it against these splits fails loudly.
    const raw: unknown = JSON.parse(await readFile(predictionsFile.path, 'utf8'));
    expect(Array.isArray(raw)).toBe(true);
    const preds = raw as { id: string; predicted: unknown }[];
    expect(preds).toHaveLength(1050);
    for (const p of preds) {
      expect(typeof p.id).toBe('string');
      expect(Array.isArray(p.predicted) && (p.predicted as unknown[]).at(-1) === 'EOF').toBe(true);
    }
    const known = new Set([...devExamples, ...trainExamples].map((e) => e.id));
    expect(preds.filter((p) => known.has(p.id))).toHaveLength(0);
    const first = preds[0]!;
    expect(() => finqaTask.metrics([{ exampleId: first.id, completions: ['1'] }], devExamples)).toThrow(first.id);
  });
});

describe('FinQA loader on temp files', () => {
  const reduced = [
    { id: 'R/1', question: 'what is the change?', pre_text: ['before'], post_text: ['after'], table: [['', '2019', '2018'], ['sales', '$ 10', '$ 8']], answer: 2.0, program: 'subtract(10, 8)' },
    { id: 'R/2', question: 'did it grow?', pre_text: [], post_text: [], table: [['a', '1']], answer: 'yes', program: 'greater(10, 8)' },
    { id: 'R/3', question: 'what share?', pre_text: [], post_text: [], table: [], answer: 0.14460000000000001 },
  ];

  it('reads the reduced 7-field schema', async () => {
    const path = join(tmp, 'reduced.json');
    await writeFile(path, JSON.stringify(reduced));
    const { examples, skipped } = await finqaTask.load({ kind: 'file', path });
    expect(skipped).toEqual([]);
    expect(examples.map((e) => e.id)).toEqual(['R/1', 'R/2', 'R/3']);
    expect(examples[0]).toEqual({ id: 'R/1', question: 'what is the change?', preText: ['before'], postText: ['after'], table: reduced[0]!.table, answer: 2, program: 'subtract(10, 8)' });
    expect(examples[2]!.program).toBeUndefined();
    expect(finqaTask.referenceOutcome(examples[2]!)).toBe('0.1446');
    expect(finqaTask.formatPrompt(examples[0]!)).toContain(' | 2019 | 2018\nsales | $ 10 | $ 8');
  });

  it('falls back to qa.answer only when exe_ans is absent', async () => {
    const path = join(tmp, 'fallback.json');
    await writeFile(path, JSON.stringify([{ id: 'F/1', pre_text: [], post_text: [], table: [], qa: { question: 'q?', answer: '14.46%' } }]));
    const { examples } = await loadFinqa(path);
    expect(examples[0]!.answer).toBe('14.46%');
    expect(finqaAnswerCorrect('0.1446', examples[0]!.answer)).toBe(true);
    expect(finqaAnswerCorrect('14.46', examples[0]!.answer)).toBe(true);
  });

  const bad: unknown[] = [
    reduced[0],
    'not an object',
    { question: 'no id', pre_text: [], post_text: [], table: [], answer: 1 },
    { id: 'B/3', pre_text: [], post_text: [], table: [], answer: 1 },
    { id: 'B/4', question: 'q?', pre_text: [], post_text: [], table: [] },
    { id: 'B/5', question: 'q?', pre_text: [], post_text: [], table: [], answer: '  ' },
    { id: 'B/6', question: 'q?', pre_text: [], post_text: [], table: 'a | b', answer: 1 },
    { id: 'B/7', pre_text: [], post_text: [], table: [], qa: { question: 'q?', exe_ans: null, answer: '3' } },
    { id: 'B/8', pre_text: 'text', post_text: [], table: [], qa: { question: 'q?', exe_ans: 3 } },
    { id: 'R/1', question: 'dup', pre_text: [], post_text: [], table: [], answer: 1 },
    reduced[1],
  ];

  it('skips and reports bad records, then continues', async () => {
    const path = join(tmp, 'bad.json');
    await writeFile(path, JSON.stringify(bad));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const { examples, skipped } = await finqaTask.load({ kind: 'file', path });
    expect(warn).toHaveBeenCalledWith(expect.stringContaining(`skipped 9 of 11 records in ${path}`));
    warn.mockRestore();
    expect(examples.map((e) => e.id)).toEqual(['R/1', 'R/2']);
    expect(skipped).toHaveLength(9);
    expect(skipped.map((s) => [s.line, s.recordId, s.field])).toEqual([
      [1, undefined, 'record'],
      [2, undefined, 'id'],
      [3, 'B/3', 'question'],
      [4, 'B/4', 'answer'],
      [5, 'B/5', 'answer'],
      [6, 'B/6', 'table'],
      [7, 'B/7', 'qa.exe_ans'],
      [8, 'B/8', 'pre_text'],
      [9, 'R/1', 'id'],
    ]);
    for (const s of skipped) {
      expect(s.file).toBe(path);
      expect(s.message).not.toBe('');
    }
  });

  it('throws at the first bad record when strict', async () => {
    const path = join(tmp, 'bad-strict.json');
    await writeFile(path, JSON.stringify([reduced[0], bad[3], bad[1]]));
    const load = finqaTask.load({ kind: 'file', path }, { strict: true });
    await expect(load).rejects.toBeInstanceOf(DatasetError);
    await expect(finqaTask.load({ kind: 'file', path }, { strict: true })).rejects.toThrow(/record 1 \(id B\/3\), field question/);
  });

  it('rejects files that are not a JSON array, naming the file', async () => {
    const notJson = join(tmp, 'not-json.json');
    await writeFile(notJson, '{"id": ');
    await expect(loadFinqa(notJson)).rejects.toThrow(DatasetError);
    await expect(loadFinqa(notJson)).rejects.toThrow(notJson);
    const notArray = join(tmp, 'object.json');
    await writeFile(notArray, JSON.stringify({ data: reduced }));
    await expect(loadFinqa(notArray)).rejects.toThrow(new RegExp(`${notArray.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*array`));
    const missing = join(tmp, 'missing.json');
    await expect(loadFinqa(missing)).rejects.toThrow(DatasetError);
    await expect(finqaTask.load({ kind: 'generated', seed: 1, count: 2 })).rejects.toThrow(DatasetError);
  });
});

describe('FinQA answer check', () => {
  const example = (id: string, answer: number | string): FinqaExample => ({ id, question: 'q?', preText: [], postText: [], table: [], answer });
  const ratio = example('A/1', 0.1446);
  const verdict = example('A/2', 'yes');
  const amount = example('A/3', 127.4);
  const examples = [ratio, verdict, amount];
  const answerCorrect = (answer: string, e: FinqaExample): boolean => finqaTask.answerCorrect!(answer, e);

  it('accepts a ratio written as a percentage, which the reward must count as correct too', () => {
    expect(answerCorrect('14.46', ratio)).toBe(true);
    expect(answerCorrect('14.46%', ratio)).toBe(true);
    expect(answerCorrect('0.15', ratio)).toBe(false);
    expect(answerCorrect('No.', verdict)).toBe(false);
  });

  it('is what the metrics count, for first completions and for pass@1 over all of them', () => {
    const completions: Record<string, string[]> = {
      [ratio.id]: [think('14.46'), think('0.1446'), think('0.15'), '14.46%', think('1446')],
      [verdict.id]: [think('no'), think('Yes, it did'), think('yes'), think(''), 'yes'],
      [amount.id]: [think('$127.40'), think('127'), think('130.1'), think('124.9'), think('about 127.4 dollars')],
    };
    const accepted = (e: FinqaExample, texts: readonly string[]): number => texts.filter((t) => answerCorrect(finqaTask.parseCompletion(t).answer, e)).length;

    // One completion per example, rotated so every completion is the first one once.
    for (let k = 0; k < 5; k++) {
      const firsts = examples.map((e) => completions[e.id]![k]!);
      const m = finqaTask.metrics(examples.map((e, i) => ({ exampleId: e.id, completions: [firsts[i]!] })), examples);
      const expected = examples.filter((e, i) => accepted(e, [firsts[i]!]) === 1).length;
      expect(m.accuracy! * examples.length, `completion ${k}`).toBeCloseTo(expected, 9);
      expect(m['pass@1']! * examples.length, `completion ${k}`).toBeCloseTo(expected, 9);
    }

    const m = finqaTask.metrics(examples.map((e) => ({ exampleId: e.id, completions: completions[e.id]! })), examples);
    const perExample = examples.map((e) => accepted(e, completions[e.id]!));
    // '14.46%' and 'yes' without a <think> block have no answer (no </think>), so they count for nothing.
    expect(perExample).toEqual([2, 2, 4]);
    expect(m['pass@1']! * examples.length * 5).toBeCloseTo(perExample.reduce((a, b) => a + b, 0), 9);
  });
});

describe('FinQA answer helpers', () => {
  it('formats numbers without float noise', () => {
    expect(formatNumber(0.14460000000000001)).toBe('0.1446');
    expect(formatNumber(0.1 + 0.2)).toBe('0.3');
    expect(formatNumber(-3)).toBe('-3');
    expect(formatNumber(1331862)).toBe('1331862');
  });

  it('treats numeric string golds as numbers', () => {
    expect(finqaAnswerCorrect('14.46%', '0.1446')).toBe(true);
    expect(finqaAnswerCorrect('0.1446', '14.46%')).toBe(true);
    expect(finqaAnswerCorrect('-3', '-3')).toBe(true);
    expect(finqaAnswerCorrect('(3)', '\u22123')).toBe(true);
    expect(finqaAnswerCorrect('3', '-3')).toBe(false);
    expect(finqaAnswerCorrect('0', 0)).toBe(true);
    expect(finqaAnswerCorrect('0.0%', 0)).toBe(true);
    expect(finqaAnswerCorrect('0.001', 0)).toBe(false);
  });

  it('parses the last number in many notations', () => {
    expect(lastNumber('$1,234,567')).toBe(1234567);
    expect(lastNumber('(3.5)')).toBe(-3.5);
    expect(lastNumber('\u22123.5')).toBe(-3.5);
    expect(lastNumber('-3.5.')).toBe(-3.5);
    expect(lastNumber('+.5')).toBe(0.5);
    expect(lastNumber('no number')).toBeUndefined();
    expect(lastNumber('up 3% (from 12)')).toBe(12);
  });

  it('rejects a negative tolerance', () => {
    expect(() => finqaAnswerCorrect('1', 1, { relativeTolerance: -0.1 })).toThrow(RangeError);
  });
});
