// The generic task (data.task = "jsonl"): a user's own JSONL records of prompt and reference outcome, with
// an optional short answer to check and an optional id, under field names the config maps. R3 needs only the
// reference, so this is the task DRO exists for: open-ended outputs that have a reference but no verifier.
import { createHash } from 'node:crypto';
import { rouge1F1, rouge2F1, rougeLF1 } from '../dro/rewards.js';
import { lastNumber } from './answers.js';
import { BadRecord, readJsonlRecords } from './jsonl.js';
import { passAtKTable } from './metrics.js';
import { DatasetError, FORMAT_INSTRUCTION, parseThinkAnswer } from './task.js';
import type { Example, LoadOptions, LoadResult, ParsedCompletion, Prediction, Task, TaskSource } from './task.js';

export type AnswerCheck = 'exact' | 'numeric' | 'none';

export interface JsonlTaskOptions {
  /** The record field that holds each part (data.jsonl.fields). */
  fields: { prompt: string; reference: string; answer: string; id: string };
  /** Appended to each prompt after a blank line; null = FORMAT_INSTRUCTION, '' = nothing. */
  formatInstruction: string | null;
  answerCheck: AnswerCheck;
  /** Relative tolerance of the 'numeric' check. */
  tolerance: number;
}

export interface JsonlExample extends Example {
  prompt: string;
  reference: string;
  /** The short final answer, as text (a JSON number is kept as written by JSON.stringify). */
  answer?: string;
  /** Where the record is, so a problem found after loading (too many tokens) still names file and line. */
  origin: { file: string; line: number };
}

/** Whitespace collapsed, trimmed and lower-cased: what the 'exact' check compares. */
export function normaliseAnswer(text: string): string {
  return text.replace(/\s+/g, ' ').trim().toLowerCase();
}

/** The number a gold answer states, or undefined; the same reader as the completion's (lastNumber), whole text only. */
function goldNumber(text: string): number | undefined {
  const n = lastNumber(text);
  // A gold answer is one number ("1,234.5", "-3", "12%"): anything else around it is a mistake in the data.
  return n !== undefined && text.replace(/[\d.,eE+\-\u2212$€£%()\s]/g, '') === '' ? n : undefined;
}

/**
 * Whether a completion's answer matches the gold one. 'exact': equal after normaliseAnswer. 'numeric': the
 * answer's last number p satisfies |p − g| ≤ tolerance·|g| (so a gold 0 needs exactly 0).
 */
export function answerMatches(answer: string, gold: string, check: Exclude<AnswerCheck, 'none'>, tolerance: number): boolean {
  if (check === 'exact') return normaliseAnswer(answer) === normaliseAnswer(gold);
  const g = goldNumber(gold);
  const p = lastNumber(answer);
  if (g === undefined || p === undefined) return false;
  return Math.abs(p - g) <= tolerance * Math.abs(g);
}

function text(record: Record<string, unknown>, field: string, recordId: string | undefined): string {
  const value = record[field];
  if (value === undefined) throw new BadRecord(`missing field "${field}"`, field, recordId);
  if (typeof value !== 'string') throw new BadRecord(`field "${field}" is ${value === null ? 'null' : `a ${Array.isArray(value) ? 'list' : typeof value}`}, not text`, field, recordId);
  if (value.trim() === '') throw new BadRecord(`field "${field}" is empty`, field, recordId);
  return value;
}

function optionalId(record: Record<string, unknown>, field: string): string | undefined {
  const value = record[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (typeof value !== 'string' || value.trim() === '') throw new BadRecord(`field "${field}" must be non-empty text or a whole number`, field);
  return value;
}

function optionalAnswer(record: Record<string, unknown>, options: JsonlTaskOptions, recordId: string | undefined): string | undefined {
  const field = options.fields.answer;
  const value = record[field];
  if (value === undefined || value === null) return undefined;
  let answer: string;
  if (typeof value === 'number' && Number.isFinite(value)) answer = String(value);
  else if (typeof value === 'string' && value.trim() !== '') answer = value;
  else throw new BadRecord(`field "${field}" must be non-empty text or a number`, field, recordId);
  if (options.answerCheck === 'numeric' && goldNumber(answer) === undefined) {
    throw new BadRecord(`field "${field}" is ${JSON.stringify(answer.length > 40 ? `${answer.slice(0, 40)}…` : answer)}, not a number (data.jsonl.answerCheck is 'numeric')`, field, recordId);
  }
  return answer;
}

/** A stable id for a record without one: its prompt and reference, so reordering the file keeps every id. */
function contentId(prompt: string, reference: string): string {
  return createHash('sha256').update(prompt).update('\0').update(reference).digest('hex').slice(0, 16);
}

/**
 * Loads `file`: one JSON object per line (blank lines ignored). Each bad record (not JSON, a missing or empty
 * prompt or reference, a malformed answer or id, an id used before in the file) is a SkippedRecord with its
 * line; `strict` throws at the first.
 */
export async function loadJsonlExamples(file: string, options: JsonlTaskOptions, load: LoadOptions = {}): Promise<LoadResult<JsonlExample>> {
  const examples: JsonlExample[] = [];
  const lines = new Map<string, number>();
  const skipped = await readJsonlRecords(file, load, (record, line) => {
    const given = optionalId(record, options.fields.id);
    const prompt = text(record, options.fields.prompt, given);
    const reference = text(record, options.fields.reference, given);
    const answer = optionalAnswer(record, options, given);
    const id = given ?? contentId(prompt, reference);
    const first = lines.get(id);
    if (first !== undefined) throw new BadRecord(given === undefined ? `repeats line ${first} (same prompt and reference)` : `id ${JSON.stringify(id)} is used before, on line ${first}`, given === undefined ? undefined : options.fields.id, id);
    lines.set(id, line);
    examples.push({ id, prompt, reference, origin: { file, line }, ...(answer === undefined ? {} : { answer }) });
  });
  return { examples, skipped };
}

const words = (s: string): number => (s.trim() === '' ? 0 : s.trim().split(/\s+/).length);

/** The task over one configuration of data.jsonl. */
export function jsonlTask(options: JsonlTaskOptions): Task<JsonlExample> {
  const instruction = options.formatInstruction ?? FORMAT_INSTRUCTION;
  const check = options.answerCheck;
  const answerCorrect =
    check === 'none' ? undefined : (answer: string, example: JsonlExample): boolean => example.answer !== undefined && answerMatches(answer, example.answer, check, options.tolerance);
  return {
    name: 'jsonl',
    async load(source: TaskSource, load?: LoadOptions): Promise<LoadResult<JsonlExample>> {
      if (source.kind !== 'file') throw new DatasetError(`the jsonl task reads a file; got a "${source.kind}" source`);
      return loadJsonlExamples(source.path, options, load);
    },
    formatPrompt: (example) => (instruction === '' ? example.prompt : `${example.prompt}\n\n${instruction}`),
    referenceOutcome: (example) => example.reference,
    parseCompletion: (completion: string): ParsedCompletion => parseThinkAnswer(completion),
    ...(answerCorrect ? { answerCorrect } : {}),
    /**
     * Over each prediction's first completion: mean ROUGE-1/2/L F1 of its answer against the reference, mean
     * answer words and answer/reference word ratio. Over all completions: the malformed share. When answers are
     * checked and some evaluated examples have one: accuracy of the first completion and pass@k over those.
     */
    metrics(predictions: readonly Prediction[], examples: readonly JsonlExample[]): Record<string, number> {
      if (predictions.length === 0) throw new Error('jsonl metrics: no predictions to score');
      const byId = new Map(examples.map((e) => [e.id, e]));
      const sums = { rouge1F1: 0, rouge2F1: 0, rougeLF1: 0, answerWords: 0, lengthRatio: 0 };
      let completions = 0;
      let malformed = 0;
      let correctFirst = 0;
      const counts: { n: number; c: number }[] = [];
      for (const prediction of predictions) {
        const example = byId.get(prediction.exampleId);
        if (!example) throw new Error(`jsonl metrics: prediction for unknown example id ${prediction.exampleId}`);
        if (prediction.completions.length === 0) throw new Error(`jsonl metrics: prediction for example id ${prediction.exampleId} has no completions`);
        const parsed = prediction.completions.map(parseThinkAnswer);
        const first = parsed[0]!.answer;
        sums.rouge1F1 += rouge1F1(first, example.reference);
        sums.rouge2F1 += rouge2F1(first, example.reference);
        sums.rougeLF1 += rougeLF1(first, example.reference);
        sums.answerWords += words(first);
        // The loader refuses an empty reference, so the ratio is finite.
        sums.lengthRatio += words(first) / words(example.reference);
        completions += parsed.length;
        malformed += parsed.filter((p) => !p.wellFormed).length;
        if (answerCorrect && example.answer !== undefined) {
          const correct = parsed.map((p) => answerCorrect(p.answer, example));
          if (correct[0]) correctFirst++;
          counts.push({ n: correct.length, c: correct.filter(Boolean).length });
        }
      }
      const n = predictions.length;
      const out: Record<string, number> = {
        rouge1F1: sums.rouge1F1 / n,
        rouge2F1: sums.rouge2F1 / n,
        rougeLF1: sums.rougeLF1 / n,
        answerWords: sums.answerWords / n,
        lengthRatio: sums.lengthRatio / n,
        malformed: malformed / completions,
      };
      if (counts.length > 0) Object.assign(out, { accuracy: correctFirst / counts.length, ...passAtKTable(counts) });
      return out;
    },
  };
}
