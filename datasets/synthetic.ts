// A synthetic arithmetic task for CPU-scale DRO runs: multi-digit addition (or multiplication by one digit) whose
// reasoning is the column-by-column work with carries, and whose reference outcome pads the answer with filler.
import { lastNumber } from './answers.js';
import { uniform } from '../dro/random.js';
import { DatasetError, FORMAT_INSTRUCTION, parseThinkAnswer, THINK_CLOSE, THINK_OPEN } from './task.js';
import type { Example, LoadResult, ParsedCompletion, Prediction, Task, TaskSource } from './task.js';
import { passAtKTable } from './metrics.js';

/**
 * One generated problem. For '+' both operands have exactly `digits` digits; for '*' `a` has `digits` digits and
 * `b` is a single digit in 2..9. `filler` is the reasoning-insensitive text after the answer in the reference
 * outcome ('' when fillerWords is 0); it lives on the example so the outcome needs nothing but the example.
 */
export interface SyntheticExample extends Example {
  a: number;
  b: number;
  op: '+' | '*';
  answer: number;
  digits: number;
  filler: string;
}

export type SyntheticOp = SyntheticExample['op'];

/** Generation parameters: `{ kind: 'generated', seed, count, digits?, op?, fillerWords? }`. */
export interface SyntheticOptions {
  seed: number;
  count: number;
  /** Digits per operand ('+') or of the multiplicand ('*'). Default 4, integer in 1..15 (keeps results exact doubles). */
  digits: number;
  /** Default '+'. */
  op: SyntheticOp;
  /** Exact number of filler words after the answer in the reference outcome. Default 8, integer in 0..1000. */
  fillerWords: number;
}

export const DEFAULT_SYNTHETIC_OPTIONS: Readonly<Omit<SyntheticOptions, 'seed' | 'count'>> = Object.freeze({ digits: 4, op: '+', fillerWords: 8 });

const MAX_DIGITS = 15;
const MAX_COUNT = 10_000_000;
const MAX_FILLER_WORDS = 1000;
const KNOWN_SOURCE_KEYS = new Set(['kind', 'seed', 'count', 'digits', 'op', 'fillerWords']);

function intOption(source: TaskSource, field: string, fallback: number | undefined, min: number, max: number): number {
  const value = (source as Record<string, unknown>)[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new DatasetError(`synthetic source field ${field} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Validates a generated source and fills in the defaults; unknown fields are rejected so typos do not pass silently. */
export function resolveSyntheticOptions(source: TaskSource): SyntheticOptions {
  if (source.kind !== 'generated') throw new DatasetError(`the synthetic task is generated, not read from a file (source kind ${JSON.stringify(source.kind)})`);
  for (const key of Object.keys(source)) {
    if (!KNOWN_SOURCE_KEYS.has(key)) throw new DatasetError(`synthetic source field ${key} is unknown`);
  }
  const op = source.op ?? DEFAULT_SYNTHETIC_OPTIONS.op;
  if (op !== '+' && op !== '*') throw new DatasetError(`synthetic source field op must be '+' or '*', got ${JSON.stringify(op)}`);
  return {
    seed: intOption(source, 'seed', undefined, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
    count: intOption(source, 'count', undefined, 0, MAX_COUNT),
    digits: intOption(source, 'digits', DEFAULT_SYNTHETIC_OPTIONS.digits, 1, MAX_DIGITS),
    op,
    fillerWords: intOption(source, 'fillerWords', DEFAULT_SYNTHETIC_OPTIONS.fillerWords, 0, MAX_FILLER_WORDS),
  };
}

// Polite sign-offs: they carry no information about the problem, so their likelihood should not depend on the
// reasoning chain. No digits, so the "last integer" answer rule never picks up filler.
const FILLER_PHRASES = [
  'I hope this helps, have a wonderful day!',
  'Thank you for the question.',
  'Let me know if anything is unclear.',
  'It was a pleasure to work through this.',
  'Good luck with the rest of your studies!',
  'Feel free to ask another question anytime.',
  'Wishing you a pleasant afternoon.',
] as const;

/**
 * Exactly `words` words of whole stock sentences picked by (seed, index), never the same sentence twice in a row;
 * the last sentence is cut to fit and given a full stop.
 */
function fillerText(seed: number, index: number, words: number): string {
  const out: string[] = [];
  let previous = -1;
  for (let k = 0; out.length < words; k++) {
    const u = uniform([seed, 'synthetic-filler', index, k]);
    const pick = previous < 0 ? Math.floor(u * FILLER_PHRASES.length) : (previous + 1 + Math.floor(u * (FILLER_PHRASES.length - 1))) % FILLER_PHRASES.length;
    previous = pick;
    out.push(...(FILLER_PHRASES[pick] ?? FILLER_PHRASES[0]).split(' '));
  }
  const kept = out.slice(0, words);
  const last = kept.at(-1);
  if (last !== undefined && !/[.!?]$/.test(last)) kept[kept.length - 1] = `${last.replace(/,$/, '')}.`;
  return kept.join(' ');
}

/** A uniform integer in [lo, hi] from the key (53 random bits cover every range used here exactly enough). */
function uniformInt(key: readonly (string | number)[], lo: number, hi: number): number {
  return lo + Math.floor(uniform(key) * (hi - lo + 1));
}

/**
 * Example `index` of the stream for (seed, op, digits). A pure function of those, so a larger `count` extends a
 * smaller one and the same seed always gives identical examples. Ids: `add-4d-<seed>-<index>` / `mul-4d-<seed>-<index>`.
 */
export function syntheticExample(options: Omit<SyntheticOptions, 'count'>, index: number): SyntheticExample {
  const { seed, digits, op, fillerWords } = options;
  const lo = 10 ** (digits - 1);
  const hi = 10 ** digits - 1;
  const key = [seed, 'synthetic', op, digits, index];
  const a = uniformInt([...key, 'a'], lo, hi);
  const b = op === '+' ? uniformInt([...key, 'b'], lo, hi) : uniformInt([...key, 'b'], 2, 9);
  return {
    id: `${op === '+' ? 'add' : 'mul'}-${digits}d-${seed}-${index}`,
    a,
    b,
    op,
    answer: op === '+' ? a + b : a * b,
    digits,
    filler: fillerText(seed, index, fillerWords),
  };
}

/** All examples of a generated source (throws DatasetError on bad options). */
export function generateSyntheticExamples(source: TaskSource): SyntheticExample[] {
  const options = resolveSyntheticOptions(source);
  return Array.from({ length: options.count }, (_, i) => syntheticExample(options, i));
}

// ---- The reasoning format ----
//
// Columns are worked from the units digit up, steps joined by "; ":
//   column i:     "<x><op><y>[+<c>]=<v> write <v mod 10> carry <floor(v / 10)>"
//                 x = digit i of a, y = digit i of b ('+') or b itself ('*'), c = the carry into the column
//                 ("+<c>" only when c > 0), v = the column value as stated.
//   final carry:  "write <c>" when the last column carries c > 0 (it becomes the leading digit).
//   last step:    "result <n>", n = the written digits read from the top down.
// Example, 4738 + 3847:
//   8+7=15 write 5 carry 1; 3+4+1=8 write 8 carry 0; 7+8=15 write 5 carry 1; 4+3+1=8 write 8 carry 0; result 8585

/** A realistic slip in one step. 'dropped-carry' at column i ignores the carry into column i (i = digits: the final
 * carry is never written); 'swapped-digits' at column i states the column value with its two digits transposed
 * (15 → 51; a one-digit value v counts as 0v, so 5 → 50) and carries on from the stated value. */
export interface ArithmeticSlip {
  kind: 'dropped-carry' | 'swapped-digits';
  column: number;
}

/** Digits of n, units first, padded with zeros to `width`. */
function digitsUnitsFirst(n: number, width: number): number[] {
  return Array.from({ length: width }, (_, i) => Math.floor(n / 10 ** i) % 10);
}

/** The column-by-column work, honest or with one slip; every later step follows from the earlier stated values. */
export function arithmeticReasoning(example: SyntheticExample, slip?: ArithmeticSlip): { steps: string[]; result: number } {
  const xs = digitsUnitsFirst(example.a, example.digits);
  const ys = example.op === '+' ? digitsUnitsFirst(example.b, example.digits) : undefined;
  const steps: string[] = [];
  const written: number[] = [];
  let carry = 0;
  for (let i = 0; i < example.digits; i++) {
    const x = xs[i] ?? 0;
    const y = ys ? (ys[i] ?? 0) : example.b;
    const carryIn = slip?.kind === 'dropped-carry' && slip.column === i ? 0 : carry;
    const value = example.op === '+' ? x + y + carryIn : x * y + carryIn;
    const stated = slip?.kind === 'swapped-digits' && slip.column === i ? [...String(value).padStart(2, '0')].reverse().join('') : String(value);
    const statedValue = Number(stated);
    written.push(statedValue % 10);
    carry = Math.floor(statedValue / 10);
    steps.push(`${x}${example.op}${y}${carryIn > 0 ? `+${carryIn}` : ''}=${stated} write ${statedValue % 10} carry ${carry}`);
  }
  if (carry > 0 && !(slip?.kind === 'dropped-carry' && slip.column === example.digits)) {
    steps.push(`write ${carry}`);
    written.push(carry);
  }
  const result = Number(written.reverse().join(''));
  steps.push(`result ${result}`);
  return { steps, result };
}

/**
 * Every slip that changes the final answer for this example: dropped carries where a carry exists, and transposed
 * two-digit column values with distinct digits; when there is neither (no carries at all), transposing a one-digit
 * column value (5 → 50). The leading column is never 0, so the list is never empty.
 */
export function possibleSlips(example: SyntheticExample): ArithmeticSlip[] {
  const xs = digitsUnitsFirst(example.a, example.digits);
  const ys = example.op === '+' ? digitsUnitsFirst(example.b, example.digits) : undefined;
  const slips: ArithmeticSlip[] = [];
  const oneDigit: ArithmeticSlip[] = [];
  let carry = 0;
  for (let i = 0; i < example.digits; i++) {
    if (carry > 0) slips.push({ kind: 'dropped-carry', column: i });
    const x = xs[i] ?? 0;
    const y = ys ? (ys[i] ?? 0) : example.b;
    const value = example.op === '+' ? x + y + carry : x * y + carry;
    if (value >= 10 && value % 11 !== 0) slips.push({ kind: 'swapped-digits', column: i });
    if (value > 0 && value < 10) oneDigit.push({ kind: 'swapped-digits', column: i });
    carry = Math.floor(value / 10);
  }
  if (carry > 0) slips.push({ kind: 'dropped-carry', column: example.digits });
  return slips.length > 0 ? slips : oneDigit;
}

/** The reference-outcome wording for a claimed answer; the same template is used for SFT completions. */
const OUTCOME_PREFIX = 'The result is ';

function outcomeText(answer: number, filler: string): string {
  return `${OUTCOME_PREFIX}${answer}.${filler === '' ? '' : ` ${filler}`}`;
}

/** Character offsets [start, end) of the answer digits inside referenceOutcome(example). */
export function answerSpan(example: SyntheticExample): { start: number; end: number } {
  const start = OUTCOME_PREFIX.length;
  return { start, end: start + String(example.answer).length };
}

export interface SftCompletion {
  text: string;
  /** True when the reasoning has no slip (then the final answer is right). */
  correct: boolean;
  /** The slip made, when there is one. */
  slip?: ArithmeticSlip;
}

/**
 * An SFT warm-start completion `<think>steps</think> The result is N. <filler>`. With probability errorRate, keyed by
 * (seed, example id), one step carries a slip from possibleSlips (chosen by the same key) and the final answer is
 * the one the slipped work leads to, so it is always wrong.
 */
export function sftCompletion(example: SyntheticExample, options: { seed: number; errorRate: number }): SftCompletion {
  const { seed, errorRate } = options;
  if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new DatasetError(`sftCompletion option seed must be a finite number, got ${String(seed)}`);
  if (typeof errorRate !== 'number' || !(errorRate >= 0 && errorRate <= 1)) throw new DatasetError(`sftCompletion option errorRate must be in [0, 1], got ${String(errorRate)}`);
  let slip: ArithmeticSlip | undefined;
  if (uniform([seed, 'sft-error', example.id]) < errorRate) {
    const slips = possibleSlips(example);
    slip = slips[Math.floor(uniform([seed, 'sft-slip', example.id]) * slips.length)];
  }
  const { steps, result } = arithmeticReasoning(example, slip);
  const text = `${THINK_OPEN}${steps.join('; ')}${THINK_CLOSE} ${outcomeText(result, example.filler)}`;
  return slip ? { text, correct: false, slip } : { text, correct: true };
}

/** The last integer in the text ("8,585" counts as 8585), or undefined when there is none. */
export function lastInteger(text: string): number | undefined {
  const value = lastNumber(text);
  return value !== undefined && Number.isInteger(value) ? value : undefined;
}

/** The synthetic answer check: the last integer of the answer equals the gold result. */
function syntheticAnswerCorrect(answer: string, example: SyntheticExample): boolean {
  return lastInteger(answer) === example.answer;
}

/**
 * Metrics over the first completion of each prediction: accuracy = syntheticAnswerCorrect on the parsed answer;
 * malformed = the completion does not follow the <think> format. Both are 0 with no predictions.
 * A prediction for an unknown example, or with no completions, is a DatasetError.
 */
/**
 * accuracy and malformed score each example's first completion (as before pass@k existed, so runs with one
 * sample report what they always did); pass@k uses all of them (passAtKTable: k = 1, 2, 4, … up to n).
 */
function syntheticMetrics(predictions: readonly Prediction[], examples: readonly SyntheticExample[]): Record<string, number> {
  const byId = new Map(examples.map((e) => [e.id, e]));
  let correct = 0;
  let malformed = 0;
  const counts: { n: number; c: number }[] = [];
  for (const prediction of predictions) {
    const example = byId.get(prediction.exampleId);
    if (!example) throw new DatasetError(`prediction for unknown example ${prediction.exampleId}`);
    if (prediction.completions.length === 0) throw new DatasetError(`prediction for ${prediction.exampleId} has no completions`);
    let c = 0;
    prediction.completions.forEach((text, i) => {
      const parsed = parseThinkAnswer(text);
      const right = syntheticAnswerCorrect(parsed.answer, example);
      if (right) c++;
      if (i > 0) return;
      if (!parsed.wellFormed) malformed++;
      if (right) correct++;
    });
    counts.push({ n: prediction.completions.length, c });
  }
  const n = predictions.length;
  if (n === 0) return { accuracy: 0, malformed: 0 };
  return { accuracy: correct / n, malformed: malformed / n, ...passAtKTable(counts) };
}

export const syntheticTask: Task<SyntheticExample> = {
  name: 'synthetic',
  load(source: TaskSource): Promise<LoadResult<SyntheticExample>> {
    // Generated records cannot be partly bad, so nothing is ever skipped; bad options reject the load.
    return Promise.resolve().then(() => ({ examples: generateSyntheticExamples(source), skipped: [] }));
  },
  formatPrompt(example: SyntheticExample): string {
    return `Compute ${example.a} ${example.op} ${example.b}.\n${FORMAT_INSTRUCTION}`;
  },
  referenceOutcome(example: SyntheticExample): string {
    return outcomeText(example.answer, example.filler);
  },
  parseCompletion(text: string): ParsedCompletion {
    return parseThinkAnswer(text);
  },
  answerCorrect: syntheticAnswerCorrect,
  metrics: syntheticMetrics,
};
