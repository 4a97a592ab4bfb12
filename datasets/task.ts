// The task interface every dataset implements (synthetic arithmetic, FinQA, ParaRev): loading with
// stable ids and per-record error reports, the prompt, the reference outcome R3 teacher-forces, how a
// completion splits into reasoning and answer, the answer check (where a task has one), and the task's metrics.

export interface Example {
  /** Stable across loads: the dataset's own id, or one derived from the record's content. */
  id: string;
  /** The gold final answer when the task has one (FinQA number, synthetic sum); undefined otherwise. */
  answer?: string | number;
}

/** Where a task reads from: a file path, or generation parameters for synthetic tasks. */
export type TaskSource = { kind: 'file'; path: string } | { kind: 'generated'; seed: number; count: number; [option: string]: unknown };

/** One record that could not be used: where it is and why. */
export interface SkippedRecord {
  file: string;
  /** 1-based line (JSONL) or record index (JSON array). */
  line?: number;
  recordId?: string;
  field?: string;
  message: string;
}

export interface LoadResult<E extends Example> {
  examples: E[];
  skipped: SkippedRecord[];
}

export interface LoadOptions {
  /** Fail on the first bad record instead of skipping it. */
  strict?: boolean;
}

/** Thrown by a strict load, or when a file cannot be read at all. */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
}

/** What the policy wrote, split by the task's completion format. Malformed output is a result, not an exception. */
export interface ParsedCompletion {
  reasoning: string;
  answer: string;
  wellFormed: boolean;
}

export interface Prediction {
  exampleId: string;
  /** Every sampled completion for the example (n ≥ 1; pass@k uses them all). */
  completions: string[];
}

export interface Task<E extends Example = Example> {
  readonly name: string;
  load(source: TaskSource, options?: LoadOptions): Promise<LoadResult<E>>;
  formatPrompt(example: E): string;
  /** The reference outcome y that R3 scores after each chain. */
  referenceOutcome(example: E): string;
  parseCompletion(text: string): ParsedCompletion;
  /**
   * The task's own check of a final answer (the text after </think>), used by the correctness reward and by
   * the accuracy metric alike; undefined for open-ended tasks (ParaRev).
   */
  answerCorrect?(answer: string, example: E): boolean;
  /** Named metrics in [0, 1] unless the name says otherwise (e.g. lengthRatio). */
  metrics(predictions: readonly Prediction[], examples: readonly E[]): Record<string, number>;
}

/**
 * The completion format shared by all tasks: the reasoning inside one <think>…</think> block, then the
 * final answer. Anything else (no block, an unclosed or repeated block, an empty answer) is malformed;
 * a malformed completion still yields its best-effort answer (the text after the last </think>, or the
 * whole text).
 */
export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

export function parseThinkAnswer(text: string): ParsedCompletion {
  const open = text.indexOf(THINK_OPEN);
  const close = text.indexOf(THINK_CLOSE);
  const lastClose = text.lastIndexOf(THINK_CLOSE);
  if (open < 0 || close < 0 || close < open) {
    const answer = (lastClose >= 0 ? text.slice(lastClose + THINK_CLOSE.length) : text).trim();
    return { reasoning: '', answer, wellFormed: false };
  }
  const reasoning = text.slice(open + THINK_OPEN.length, close).trim();
  const answer = text.slice(close + THINK_CLOSE.length).trim();
  const repeated = text.indexOf(THINK_OPEN, open + 1) >= 0 || lastClose !== close;
  const leading = text.slice(0, open).trim() !== '';
  return { reasoning, answer, wellFormed: !repeated && !leading && answer !== '' };
}

/** Prompt suffix that states the completion format, shared by every task's prompt. */
export const FORMAT_INSTRUCTION = `Think step by step inside ${THINK_OPEN}…${THINK_CLOSE}, then give only the final answer.`;
