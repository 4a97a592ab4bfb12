// FinQA (Chen et al., EMNLP 2021): numerical questions over an earnings-report page (text + one table).
// Loads the original and the reduced 7-field schema, builds prompts, and scores free-text answers.
import { readJsonFile } from '../storage/local-files.js';
import { lastNumber } from './answers.js';
import { parseNumericAnswer } from '../dro/rewards.js';
import { passAtKTable } from './metrics.js';
import { DatasetError, FORMAT_INSTRUCTION, parseThinkAnswer } from './task.js';
import type { Example, LoadOptions, LoadResult, ParsedCompletion, Prediction, SkippedRecord, Task, TaskSource } from './task.js';

export interface FinqaExample extends Example {
  question: string;
  preText: string[];
  postText: string[];
  /** Normalised table (`table`, not `table_ori`); row[0] is the row name. */
  table: string[][];
  /** Gold answer: the executed answer `exe_ans` (a number rounded to 5 dp, or "yes"/"no"). */
  answer: string | number;
  program?: string;
}

export const DEFAULT_RELATIVE_TOLERANCE = 0.02;

// ---------------------------------------------------------------------------------------------------
// Loading

/** A record that cannot become an example: which field is wrong, and why. */
class BadRecord extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringArray(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw new BadRecord(field, `${field} must be an array of strings`);
  return value.map((item, i) => {
    if (typeof item !== 'string') throw new BadRecord(field, `${field}[${i}] must be a string`);
    return item;
  });
}

function table(value: unknown): string[][] {
  if (!Array.isArray(value)) throw new BadRecord('table', 'table must be an array of rows');
  return value.map((row, r) => {
    if (!Array.isArray(row)) throw new BadRecord('table', `table row ${r} must be an array of cells`);
    return row.map((cell, c) => {
      // Numeric cells are harmless (the prompt renders them as text); anything else means a broken record.
      if (typeof cell === 'string') return cell;
      if (typeof cell === 'number' && Number.isFinite(cell)) return String(cell);
      throw new BadRecord('table', `table cell [${r}][${c}] must be a string`);
    });
  });
}

function usableAnswer(value: unknown): value is string | number {
  return (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && value.trim() !== '');
}

/**
 * One record in either schema. Original: question, answer and program under `qa`. Reduced (the held-out
 * test_500.json): `question`, `answer`, `program` at the top level, where `answer` is already `exe_ans`.
 */
function toExample(record: unknown): FinqaExample {
  if (!isObject(record)) throw new BadRecord('record', 'record must be a JSON object');
  const id = record.id;
  if (typeof id !== 'string' || id.trim() === '') throw new BadRecord('id', 'id must be a non-empty string');

  let question: unknown;
  let answer: unknown;
  let program: unknown;
  let prefix = '';
  if ('qa' in record) {
    const qa = record.qa;
    if (!isObject(qa)) throw new BadRecord('qa', 'qa must be an object');
    prefix = 'qa.';
    question = qa.question;
    program = qa.program;
    // The paper's execution accuracy compares with `exe_ans`, and the human `answer` string disagrees
    // with it on some records (e.g. "44%" vs 1.25), so `exe_ans` is the gold; `answer` only fills in
    // when `exe_ans` is absent.
    if (qa.exe_ans !== undefined) {
      answer = qa.exe_ans;
      if (!usableAnswer(answer)) throw new BadRecord('qa.exe_ans', 'qa.exe_ans must be a finite number or a non-empty string');
    } else {
      answer = qa.answer;
      if (!usableAnswer(answer)) throw new BadRecord('qa.answer', 'qa has neither exe_ans nor a non-empty answer');
    }
  } else {
    question = record.question;
    answer = record.answer;
    program = record.program;
    if (!usableAnswer(answer)) throw new BadRecord('answer', 'answer must be a finite number or a non-empty string');
  }
  if (typeof question !== 'string' || question.trim() === '') throw new BadRecord(`${prefix}question`, 'question must be a non-empty string');
  if (program !== undefined && typeof program !== 'string') throw new BadRecord(`${prefix}program`, 'program must be a string');

  const example: FinqaExample = {
    id,
    question,
    preText: stringArray(record.pre_text ?? [], 'pre_text'),
    postText: stringArray(record.post_text ?? [], 'post_text'),
    table: table(record.table),
    answer: typeof answer === 'string' ? answer.trim() : answer,
  };
  if (program !== undefined) example.program = program;
  return example;
}

/**
 * Reads a FinQA JSON array. Bad records are skipped and reported (file, 0-based record index as `line`,
 * id when known, field), or throw at the first one when `strict`. A later record repeating an id is bad
 * too: ids key predictions, so they must be unique.
 */
export async function loadFinqa(path: string, options: LoadOptions = {}): Promise<LoadResult<FinqaExample>> {
  let data: unknown;
  try {
    data = await readJsonFile(path);
  } catch (error) {
    throw new DatasetError(`FinQA: ${(error as Error).message}`);
  }
  if (!Array.isArray(data)) throw new DatasetError(`FinQA file ${path} must hold a JSON array of records`);

  const examples: FinqaExample[] = [];
  const skipped: SkippedRecord[] = [];
  const seen = new Set<string>();
  data.forEach((record: unknown, index) => {
    const recordId = isObject(record) && typeof record.id === 'string' ? record.id : undefined;
    let problem: BadRecord | undefined;
    try {
      const example = toExample(record);
      if (seen.has(example.id)) problem = new BadRecord('id', `duplicate id ${example.id}`);
      else {
        seen.add(example.id);
        examples.push(example);
      }
    } catch (error) {
      if (!(error instanceof BadRecord)) throw error;
      problem = error;
    }
    if (!problem) return;
    const skip: SkippedRecord = { file: path, line: index, field: problem.field, message: problem.message };
    if (recordId !== undefined) skip.recordId = recordId;
    if (options.strict) {
      throw new DatasetError(`FinQA file ${path}, record ${index}${recordId !== undefined ? ` (id ${recordId})` : ''}, field ${problem.field}: ${problem.message}`);
    }
    skipped.push(skip);
  });
  if (skipped.length > 0) console.warn(`FinQA: skipped ${skipped.length} of ${data.length} records in ${path}`);
  return { examples, skipped };
}

// ---------------------------------------------------------------------------------------------------
// Answers

/** A number as text without float noise: 0.14460000000000001 → "0.1446" (12 significant digits). */
export function formatNumber(value: number): string {
  return String(Number(value.toPrecision(12)));
}

export { lastNumber };

/** A gold answer as a number when it is one (a number, or a string that is wholly a number; "x%" → x). */
function numericGold(gold: number | string): number | undefined {
  if (typeof gold === 'number') return Number.isFinite(gold) ? gold : undefined;
  return parseNumericAnswer(gold.replace(/\u2212/g, '-'))?.value;
}

function normaliseText(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

function firstWord(text: string): string {
  return normaliseText(text).split(' ')[0] ?? '';
}

/** Text gold: yes/no against the answer's first word; anything else against the whole normalised answer. */
function textCorrect(predicted: string, gold: string): boolean {
  const g = normaliseText(gold);
  if (g === '') return false;
  if (g === 'yes' || g === 'no') return firstWord(predicted) === g;
  return normaliseText(predicted) === g;
}

// Float noise must not fail an answer sitting exactly on the tolerance (127.4 × 1.02 vs 127.4).
const BOUNDARY_SLACK = 1e-9;

function within(x: number, gold: number, tolerance: number): boolean {
  if (gold === 0) return Math.abs(x) <= 1e-9;
  return Math.abs(x - gold) <= tolerance * Math.abs(gold) * (1 + BOUNDARY_SLACK);
}

/**
 * Lenient FinQA correctness for free-text answers. Numeric gold: the LAST number p in the answer counts,
 * and any of p, p/100, 100·p within the relative tolerance (default 2%) of the gold is correct, because
 * models write a ratio 0.1446 as "14.46%" or "14.46" and the gold uses either form. Yes/no gold: the
 * answer's first word, case-insensitive. Never throws on unparsable answers; they are just wrong.
 */
export function finqaAnswerCorrect(predicted: string, gold: number | string, options: { relativeTolerance?: number } = {}): boolean {
  const tolerance = options.relativeTolerance ?? DEFAULT_RELATIVE_TOLERANCE;
  if (!(tolerance >= 0)) throw new RangeError(`finqaAnswerCorrect: relativeTolerance must be ≥ 0, got ${tolerance}`);
  const g = numericGold(gold);
  if (g === undefined) return typeof gold === 'string' && textCorrect(predicted, gold);
  const p = lastNumber(predicted);
  if (p === undefined) return false;
  return [p, p / 100, p * 100].some((x) => within(x, g, tolerance));
}

/** Numbers to 5 decimals, like the official script's round(x, 5). */
function round5(value: number): number {
  return Number(value.toFixed(5));
}

/**
 * Official-style exact match: the answer's last number and the gold, both rounded to 5 decimals, are equal
 * (no tolerance, no percent rescaling); text golds as in finqaAnswerCorrect.
 */
export function finqaExactMatch(predicted: string, gold: number | string): boolean {
  const g = numericGold(gold);
  if (g === undefined) return typeof gold === 'string' && textCorrect(predicted, gold);
  const p = lastNumber(predicted);
  return p !== undefined && round5(p) === round5(g);
}

// ---------------------------------------------------------------------------------------------------
// Task

function renderTable(rows: readonly string[][]): string {
  return rows.map((row) => row.join(' | ')).join('\n');
}

function formatPrompt(example: FinqaExample): string {
  const sections: string[] = [];
  if (example.preText.length > 0) sections.push(example.preText.join('\n'));
  if (example.table.length > 0) sections.push(`Table:\n${renderTable(example.table)}`);
  if (example.postText.length > 0) sections.push(example.postText.join('\n'));
  sections.push(`Question: ${example.question}`);
  sections.push(FORMAT_INSTRUCTION);
  return sections.join('\n\n');
}

function referenceOutcome(example: FinqaExample): string {
  return typeof example.answer === 'number' ? formatNumber(example.answer) : example.answer;
}

/** The FinQA answer check, shared by the correctness reward and the metrics: finqaAnswerCorrect against the gold. */
function answerCorrect(answer: string, example: FinqaExample): boolean {
  return finqaAnswerCorrect(answer, example.answer);
}

/**
 * accuracy (answerCorrect) and exactMatch score each example's first completion; pass@k uses all of them, for
 * k = 1, 2, 4, … up to the smallest n over the predictions (passAtKTable), so every example can supply k samples. A malformed
 * completion is still scored on its best-effort answer; `malformed` reports how often that happened.
 */
function metrics(predictions: readonly Prediction[], examples: readonly FinqaExample[]): Record<string, number> {
  if (predictions.length === 0) throw new Error('FinQA metrics: no predictions to score');
  const byId = new Map(examples.map((e) => [e.id, e]));
  let correctFirst = 0;
  let exactFirst = 0;
  let completions = 0;
  let malformed = 0;
  const counts: { n: number; c: number }[] = [];
  for (const prediction of predictions) {
    const example = byId.get(prediction.exampleId);
    if (!example) throw new Error(`FinQA metrics: prediction for unknown example id ${prediction.exampleId}`);
    if (prediction.completions.length === 0) throw new Error(`FinQA metrics: prediction for example id ${prediction.exampleId} has no completions`);
    let c = 0;
    prediction.completions.forEach((text, i) => {
      const parsed = parseThinkAnswer(text);
      completions++;
      if (!parsed.wellFormed) malformed++;
      const correct = answerCorrect(parsed.answer, example);
      if (correct) c++;
      if (i === 0) {
        if (correct) correctFirst++;
        if (finqaExactMatch(parsed.answer, example.answer)) exactFirst++;
      }
    });
    counts.push({ n: prediction.completions.length, c });
  }
  return {
    accuracy: correctFirst / predictions.length,
    exactMatch: exactFirst / predictions.length,
    ...passAtKTable(counts),
    malformed: malformed / completions,
  };
}

export const finqaTask: Task<FinqaExample> = {
  name: 'finqa',
  async load(source: TaskSource, options?: LoadOptions): Promise<LoadResult<FinqaExample>> {
    if (source.kind !== 'file') throw new DatasetError(`FinQA loads from a file, not a ${source.kind} source`);
    return loadFinqa(source.path, options);
  },
  formatPrompt,
  referenceOutcome,
  parseCompletion(text: string): ParsedCompletion {
    return parseThinkAnswer(text);
  },
  answerCorrect,
  metrics,
};
