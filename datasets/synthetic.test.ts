// The synthetic arithmetic task: deterministic generation, correct answers, the documented reasoning format,
// SFT completions with visible slips at the requested rate, answer-span offsets, prompts and metrics.
import { describe, expect, it } from 'vitest';
import {
  answerSpan,
  arithmeticReasoning,
  generateSyntheticExamples,
  lastInteger,
  possibleSlips,
  sftCompletion,
  syntheticExample,
  syntheticTask,
} from './synthetic.js';
import type { SyntheticExample } from './synthetic.js';
import { DatasetError, FORMAT_INSTRUCTION, parseThinkAnswer } from './task.js';
import type { TaskSource } from './task.js';

const source = (extra: Record<string, unknown> = {}): TaskSource => ({ kind: 'generated', seed: 7, count: 50, ...extra });

/** A hand-made example (filler chosen by the test). */
function example(a: number, b: number, op: '+' | '*', filler = ''): SyntheticExample {
  const digits = String(a).length;
  return { id: `t-${a}${op}${b}`, a, b, op, answer: op === '+' ? a + b : a * b, digits, filler };
}

/**
 * Re-checks reasoning against the documented format, step by step, from the operands alone. Returns the steps
 * that do not follow from the operands and the previous step, and the result the reasoning states.
 */
function audit(ex: SyntheticExample, reasoning: string): { bad: number[]; result: number; written: number } {
  const steps = reasoning.split('; ');
  const bad: number[] = [];
  const digitAt = (n: number, i: number): number => Math.floor(n / 10 ** i) % 10;
  let carry = 0;
  const written: number[] = [];
  let s = 0;
  for (let i = 0; i < ex.digits; i++, s++) {
    const m = /^(\d)([+*])(\d)(?:\+(\d))?=(\d+) write (\d) carry (\d)$/.exec(steps[s] ?? '');
    if (!m) throw new Error(`step ${s} does not match the format: ${steps[s]}`);
    const [x, y, c, stated, write, carryOut] = [m[1], m[3], m[4] ?? '0', m[5], m[6], m[7]].map(Number) as [number, number, number, number, number, number];
    expect(m[2]).toBe(ex.op);
    expect(x).toBe(digitAt(ex.a, i));
    expect(y).toBe(ex.op === '+' ? digitAt(ex.b, i) : ex.b);
    const truth = ex.op === '+' ? x + y + c : x * y + c;
    if (c !== carry || stated !== truth) bad.push(s);
    // write and carry always follow from the stated value.
    expect(write).toBe(stated % 10);
    expect(carryOut).toBe(Math.floor(stated / 10));
    written.push(write);
    carry = carryOut;
  }
  const finalWrite = /^write (\d)$/.exec(steps[s] ?? '');
  if (finalWrite) {
    expect(Number(finalWrite[1])).toBe(carry);
    written.push(carry);
    s++;
  } else if (carry > 0) {
    bad.push(s); // the last carry was dropped
  }
  const result = /^result (\d+)$/.exec(steps[s] ?? '');
  if (!result) throw new Error(`missing result step: ${steps[s]}`);
  expect(s).toBe(steps.length - 1);
  return { bad, result: Number(result[1]), written: Number(written.reverse().join('')) };
}

describe('generation', () => {
  it('gives identical examples for the same seed, different ones for another seed', async () => {
    const a = await syntheticTask.load(source());
    const b = await syntheticTask.load(source());
    const c = await syntheticTask.load(source({ seed: 8 }));
    expect(a).toEqual(b);
    expect(a.skipped).toEqual([]);
    expect(a.examples).toHaveLength(50);
    expect(c.examples.map((e) => [e.a, e.b])).not.toEqual(a.examples.map((e) => [e.a, e.b]));
  });

  it('makes a larger count extend a smaller one', () => {
    expect(generateSyntheticExamples(source({ count: 100 })).slice(0, 50)).toEqual(generateSyntheticExamples(source()));
  });

  it('uses stable ids and operands of the requested size with correct answers', () => {
    for (const digits of [1, 2, 4, 9, 15]) {
      const add = generateSyntheticExamples(source({ digits, count: 200 }));
      add.forEach((e, i) => {
        expect(e.id).toBe(`add-${digits}d-7-${i}`);
        expect(e.op).toBe('+');
        expect(String(e.a)).toHaveLength(digits);
        expect(String(e.b)).toHaveLength(digits);
        expect(e.answer).toBe(e.a + e.b);
        expect(Number.isSafeInteger(e.answer)).toBe(true);
      });
      const mul = generateSyntheticExamples(source({ digits, op: '*', count: 200 }));
      mul.forEach((e, i) => {
        expect(e.id).toBe(`mul-${digits}d-7-${i}`);
        expect(String(e.a)).toHaveLength(digits);
        expect(e.b).toBeGreaterThanOrEqual(2);
        expect(e.b).toBeLessThanOrEqual(9);
        expect(e.answer).toBe(e.a * e.b);
        expect(Number.isSafeInteger(e.answer)).toBe(true);
      });
    }
    expect(new Set(generateSyntheticExamples(source({ count: 1000, digits: 3 })).map((e) => e.a)).size).toBeGreaterThan(500);
  });

  it('defaults to 4-digit addition with 8 filler words', () => {
    const [first] = generateSyntheticExamples(source({ count: 1 }));
    expect(first?.id).toBe('add-4d-7-0');
    expect(first?.filler.split(' ')).toHaveLength(8);
  });

  it('makes filler of exactly fillerWords words, without digits, ending a sentence', () => {
    for (const fillerWords of [0, 1, 3, 8, 40, 200]) {
      for (const e of generateSyntheticExamples(source({ fillerWords, count: 20 }))) {
        expect(e.filler === '' ? 0 : e.filler.split(' ').length).toBe(fillerWords);
        expect(e.filler).not.toMatch(/\d/);
        if (fillerWords > 0) expect(e.filler).toMatch(/[.!?]$/);
      }
    }
  });

  it('rejects bad sources with DatasetError naming the field', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ digits: 0 }, /field digits/],
      [{ digits: 16 }, /field digits/],
      [{ op: '-' }, /field op/],
      [{ count: -1 }, /field count/],
      [{ seed: 1.5 }, /field seed/],
      [{ fillerWords: 2.5 }, /field fillerWords/],
      [{ digts: 3 }, /field digts is unknown/],
    ];
    for (const [extra, message] of cases) {
      await expect(syntheticTask.load(source(extra))).rejects.toThrow(DatasetError);
      await expect(syntheticTask.load(source(extra))).rejects.toThrow(message);
    }
    await expect(syntheticTask.load({ kind: 'file', path: '/tmp/x.jsonl' })).rejects.toThrow(/generated, not read from a file/);
  });
});

describe('reasoning format', () => {
  it('is the documented column work', () => {
    expect(arithmeticReasoning(example(4738, 3847, '+')).steps.join('; ')).toBe(
      '8+7=15 write 5 carry 1; 3+4+1=8 write 8 carry 0; 7+8=15 write 5 carry 1; 4+3+1=8 write 8 carry 0; result 8585',
    );
    expect(arithmeticReasoning(example(95, 17, '+')).steps.join('; ')).toBe('5+7=12 write 2 carry 1; 9+1+1=11 write 1 carry 1; write 1; result 112');
    expect(arithmeticReasoning(example(478, 7, '*')).steps.join('; ')).toBe(
      '8*7=56 write 6 carry 5; 7*7+5=54 write 4 carry 5; 4*7+5=33 write 3 carry 3; write 3; result 3346',
    );
  });

  it('reaches the right answer for every generated example', () => {
    for (const op of ['+', '*'] as const) {
      for (const e of generateSyntheticExamples(source({ op, digits: 6, count: 300 }))) {
        const { steps, result } = arithmeticReasoning(e);
        expect(result).toBe(e.answer);
        expect(audit(e, steps.join('; '))).toEqual({ bad: [], result: e.answer, written: e.answer });
      }
    }
  });
});

describe('sftCompletion', () => {
  const examples = [
    ...generateSyntheticExamples(source({ count: 1000 })),
    ...generateSyntheticExamples(source({ op: '*', digits: 3, count: 600 })),
    ...generateSyntheticExamples(source({ digits: 1, count: 400 })),
  ];

  it('is deterministic in (seed, example id)', () => {
    for (const e of examples.slice(0, 50)) {
      expect(sftCompletion(e, { seed: 1, errorRate: 0.5 })).toEqual(sftCompletion({ ...e }, { seed: 1, errorRate: 0.5 }));
    }
    const texts = (seed: number): string[] => examples.slice(0, 200).map((e) => sftCompletion(e, { seed, errorRate: 0.5 }).text);
    expect(texts(1)).not.toEqual(texts(2));
  });

  it('gives the right answer when correct, and a wrong one with exactly one visible slip otherwise', () => {
    let slipped = 0;
    const kinds = new Set<string>();
    for (const e of examples) {
      const c = sftCompletion(e, { seed: 3, errorRate: 0.5 });
      const parsed = syntheticTask.parseCompletion(c.text);
      expect(parsed.wellFormed).toBe(true);
      expect(parsed.answer).toBe(`The result is ${lastInteger(parsed.answer)}.${e.filler === '' ? '' : ` ${e.filler}`}`);
      const { bad, result, written } = audit(e, parsed.reasoning);
      expect(result).toBe(written);
      expect(lastInteger(parsed.answer)).toBe(result); // the answer is the one the reasoning reached
      if (c.correct) {
        expect(c.slip).toBeUndefined();
        expect(result).toBe(e.answer);
        expect(bad).toEqual([]);
      } else {
        slipped++;
        expect(result).not.toBe(e.answer);
        expect(bad).toHaveLength(1);
        expect(bad[0]).toBe(c.slip?.column);
        kinds.add(c.slip?.kind ?? '');
        // The slipped work changes the answer by exactly the slip's amount.
        const slip = c.slip;
        if (slip?.kind === 'dropped-carry') expect((e.answer - result) % 10 ** slip.column).toBe(0);
        if (slip?.kind === 'swapped-digits') expect(Math.abs(result - e.answer) % (9 * 10 ** slip.column)).toBe(0);
      }
    }
    expect(slipped).toBeGreaterThan(500);
    expect(kinds).toEqual(new Set(['dropped-carry', 'swapped-digits']));
  });

  it('shows a dropped carry and swapped digits in the step that slipped', () => {
    const e = example(4738, 3847, '+');
    expect(arithmeticReasoning(e, { kind: 'dropped-carry', column: 1 }).steps.join('; ')).toBe(
      '8+7=15 write 5 carry 1; 3+4=7 write 7 carry 0; 7+8=15 write 5 carry 1; 4+3+1=8 write 8 carry 0; result 8575',
    );
    expect(arithmeticReasoning(e, { kind: 'swapped-digits', column: 0 }).steps.join('; ')).toBe(
      '8+7=51 write 1 carry 5; 3+4+5=12 write 2 carry 1; 7+8+1=16 write 6 carry 1; 4+3+1=8 write 8 carry 0; result 8621',
    );
    expect(arithmeticReasoning(example(95, 17, '+'), { kind: 'dropped-carry', column: 2 }).steps.join('; ')).toBe(
      '5+7=12 write 2 carry 1; 9+1+1=11 write 1 carry 1; result 12',
    );
    // No carries and no two-digit values: a one-digit value is transposed (3 → 30).
    expect(possibleSlips(example(2, 1, '+'))).toEqual([{ kind: 'swapped-digits', column: 0 }]);
    expect(arithmeticReasoning(example(2, 1, '+'), { kind: 'swapped-digits', column: 0 }).steps.join('; ')).toBe('2+1=30 write 0 carry 3; write 3; result 30');
    // 5 + 6 = 11 cannot be transposed; only its final carry can be dropped.
    expect(possibleSlips(example(5, 6, '+'))).toEqual([{ kind: 'dropped-carry', column: 1 }]);
  });

  it('slips at the requested rate', () => {
    const sample = generateSyntheticExamples(source({ seed: 99, count: 2000 }));
    for (const errorRate of [0, 0.1, 0.3, 1]) {
      const observed = sample.filter((e) => !sftCompletion(e, { seed: 5, errorRate }).correct).length / sample.length;
      expect(Math.abs(observed - errorRate)).toBeLessThan(0.035);
      if (errorRate === 0 || errorRate === 1) expect(observed).toBe(errorRate);
    }
  });

  it('rejects bad options', () => {
    const [e] = examples;
    if (!e) throw new Error('no examples');
    expect(() => sftCompletion(e, { seed: 1, errorRate: 1.5 })).toThrow(/errorRate/);
    expect(() => sftCompletion(e, { seed: 1, errorRate: Number.NaN })).toThrow(/errorRate/);
    expect(() => sftCompletion(e, { seed: Number.POSITIVE_INFINITY, errorRate: 0 })).toThrow(/seed/);
  });
});

describe('reference outcome and answerSpan', () => {
  it('puts the answer digits exactly at the span, for several examples and filler sizes', () => {
    for (const fillerWords of [0, 1, 8, 50]) {
      for (const op of ['+', '*'] as const) {
        for (const e of generateSyntheticExamples(source({ fillerWords, op, digits: 5, count: 25 }))) {
          const outcome = syntheticTask.referenceOutcome(e);
          const { start, end } = answerSpan(e);
          expect(outcome.slice(start, end)).toBe(String(e.answer));
          expect(outcome[start - 1]).toBe(' ');
          expect(outcome[end]).toBe('.');
          expect(outcome.slice(0, start)).not.toMatch(/\d/);
          expect(outcome.slice(end)).not.toMatch(/\d/);
          expect(outcome.length).toBe(fillerWords === 0 ? end + 1 : end + 2 + e.filler.length);
        }
      }
    }
  });

  it('maps the span to exactly the answer tokens of the byte tokenizer, the tokens R3 should single out', async () => {
    const { ByteTokenizer } = await import('../engine/tokenizer/byte-tokenizer.js');
    const tokenizer = new ByteTokenizer();
    const { examples } = await syntheticTask.load({ kind: 'generated', seed: 5, count: 20, digits: 5, fillerWords: 12 });
    for (const e of examples) {
      const ids = tokenizer.encode(syntheticTask.referenceOutcome(e));
      const { start, end } = answerSpan(e);
      // The outcome is ASCII, so character offsets are byte-token offsets.
      expect(tokenizer.decode(ids.slice(start, end))).toBe(String(e.answer));
      expect(ids.length - (end - start)).toBeGreaterThan(5 * (end - start)); // the answer is a small part of the reference
    }
  });

  it('reads as the documented sentence', () => {
    expect(syntheticTask.referenceOutcome(example(4738, 3847, '+', 'I hope this helps, have a wonderful day!'))).toBe(
      'The result is 8585. I hope this helps, have a wonderful day!',
    );
    expect(syntheticTask.referenceOutcome(example(4738, 3847, '+'))).toBe('The result is 8585.');
    expect(answerSpan(example(4738, 3847, '+'))).toEqual({ start: 14, end: 18 });
  });
});

describe('prompt and parsing', () => {
  it('states the problem and the format', () => {
    expect(syntheticTask.formatPrompt(example(4738, 3847, '+'))).toBe(`Compute 4738 + 3847.\n${FORMAT_INSTRUCTION}`);
    expect(syntheticTask.formatPrompt(example(478, 7, '*'))).toBe(`Compute 478 * 7.\n${FORMAT_INSTRUCTION}`);
    expect(syntheticTask.name).toBe('synthetic');
  });

  it('parses with the shared think/answer format', () => {
    const text = '<think>8+7=15 write 5 carry 1</think> The result is 8585.';
    expect(syntheticTask.parseCompletion(text)).toEqual(parseThinkAnswer(text));
  });
});

describe('metrics', () => {
  const e1 = example(4738, 3847, '+'); // 8585
  const e2 = example(478, 7, '*'); // 3346
  const e3 = example(12, 34, '+'); // 46

  it('scores the last integer of the first completion and counts malformed output', () => {
    const m = syntheticTask.metrics(
      [
        // Right, with words around the answer; the second completion (wrong) counts for pass@k only.
        { exampleId: e1.id, completions: ['<think>work</think> The result is 8585. Have a nice day!', '<think>x</think> 1'] },
        // Wrong: the last integer is 12, not 3346.
        { exampleId: e2.id, completions: ['<think>w</think> 3346, or maybe 12'] },
        // Malformed (no think block): without a </think> all of it is chain, so there is no answer and 46 does not count.
        { exampleId: e3.id, completions: ['so 46'] },
      ],
      [e1, e2, e3],
    );
    // pass@1 is c/n per example over all its completions: 1/2, 0, 0.
    expect(m).toEqual({ accuracy: 1 / 3, malformed: 1 / 3, 'pass@1': 1 / 6 });
  });

  it('reports pass@1, 2, 4, 8 from 8 samples per example, by the unbiased estimator', () => {
    const right = '<think>w</think> 8585';
    const wrong = '<think>w</think> 1';
    // e1: 2 of 8 right (the first wrong); e3: 0 of 8 right.
    const m = syntheticTask.metrics(
      [
        { exampleId: e1.id, completions: [wrong, right, right, wrong, wrong, wrong, wrong, wrong] },
        { exampleId: e3.id, completions: Array.from({ length: 8 }, () => wrong) },
      ],
      [e1, e3],
    );
    // pass@k for (n 8, c 2) is 1 − C(6, k)/C(8, k): k 1 → 1/4, k 2 → 1 − 15/28, k 4 → 1 − 15/70, k 8 → 1.
    expect(m.accuracy).toBe(0);
    expect(m['pass@1']).toBeCloseTo(0.25 / 2, 12);
    expect(m['pass@2']).toBeCloseTo((1 - 15 / 28) / 2, 12);
    expect(m['pass@4']).toBeCloseTo((1 - 15 / 70) / 2, 12);
    expect(m['pass@8']).toBeCloseTo(0.5, 12);
    expect(Object.keys(m).sort()).toEqual(['accuracy', 'malformed', 'pass@1', 'pass@2', 'pass@4', 'pass@8']);
  });

  it('handles separators, no integer, and an empty prediction list', () => {
    expect(lastInteger('The result is 8,585.')).toBe(8585);
    expect(lastInteger('no digits here')).toBeUndefined();
    expect(lastInteger('-5 then 12345')).toBe(12345);
    const m = syntheticTask.metrics([{ exampleId: e1.id, completions: ['<think>a</think> The result is 8,585.'] }, { exampleId: e3.id, completions: ['<think>a</think> unsure'] }], [e1, e3]);
    expect(m).toEqual({ accuracy: 0.5, malformed: 0, 'pass@1': 0.5 });
    expect(syntheticTask.metrics([], [e1])).toEqual({ accuracy: 0, malformed: 0 });
  });

  it('scores SFT completions: correct ones right, slipped ones wrong', () => {
    const examples = generateSyntheticExamples(source({ count: 300 }));
    const completions = examples.map((e) => sftCompletion(e, { seed: 4, errorRate: 0.25 }));
    const m = syntheticTask.metrics(
      examples.map((e, i) => ({ exampleId: e.id, completions: [completions[i]?.text ?? ''] })),
      examples,
    );
    const accuracy = completions.filter((c) => c.correct).length / examples.length;
    expect(m).toEqual({ accuracy, malformed: 0, 'pass@1': accuracy });
  });

  it('counts as correct exactly the completions answerCorrect accepts', () => {
    const answerCorrect = (answer: string, e: SyntheticExample): boolean => syntheticTask.answerCorrect!(answer, e);
    const examples = generateSyntheticExamples(source({ count: 120 }));
    const texts = examples.map((e, i) => {
      const variants = [sftCompletion(e, { seed: 9, errorRate: 0.4 }).text, `<think>x</think> ${e.answer}`, `${e.answer + 1}`, `<think>x</think> about ${e.answer}.5`, 'no idea'];
      return variants[i % variants.length]!;
    });
    const accepted = examples.filter((e, i) => answerCorrect(syntheticTask.parseCompletion(texts[i]!).answer, e)).length;
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(examples.length);
    const m = syntheticTask.metrics(
      examples.map((e, i) => ({ exampleId: e.id, completions: [texts[i]!] })),
      examples,
    );
    expect(m.accuracy! * examples.length).toBeCloseTo(accepted, 9);
    expect(answerCorrect('The result is 8,585.', e1)).toBe(true);
    expect(answerCorrect('8585 or 8586', e1)).toBe(false);
  });

  it('rejects predictions for unknown examples or without completions', () => {
    expect(() => syntheticTask.metrics([{ exampleId: 'nope', completions: ['1'] }], [e1])).toThrow(DatasetError);
    expect(() => syntheticTask.metrics([{ exampleId: e1.id, completions: [] }], [e1])).toThrow(/no completions/);
  });

  it('generated examples come from syntheticExample', () => {
    expect(generateSyntheticExamples(source({ count: 3 }))[2]).toEqual(syntheticExample({ seed: 7, digits: 4, op: '+', fillerWords: 8 }, 2));
  });
});
