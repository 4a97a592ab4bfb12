// The task interface every dataset implements (synthetic arithmetic, FinQA, ParaRev): loading with
// stable ids and per-record error reports, the prompt, the reference outcome R3 teacher-forces, how a
// completion splits into chain and answer (one rule for training and evaluation), the answer check (where
// a task has one), and the task's metrics.

export interface Example {
  /** Stable across loads: the dataset's own id, or one derived from the record's content. */
  id: string;
  /** The gold final answer when the task has one (FinQA number, synthetic sum); undefined otherwise. */
  answer?: string | number;
  /** The file and line the example was read from, where the task keeps them (jsonl), so later problems name them. */
  origin?: { file: string; line: number };
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

/** What the policy wrote, split by the completion format. Malformed output is a result, not an exception. */
export interface ParsedCompletion {
  /** The text through the first </think> (closed by us when the policy never closed it): R3 scores the reference after it. */
  chain: string;
  /** The chain's text after its opening <think> (from the start when it has none), trimmed. */
  reasoning: string;
  /** The policy's final answer: the text after the first </think>, trimmed; '' when there is no </think>. */
  answer: string;
  /** One <think>…</think> block, at the start, not repeated, then a non-empty answer. */
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
  /**
   * The chain and answer of a completion (parseThinkAnswer for every task). The training step reads both
   * through it (R3 after the chain, the length penalty and correctness reward on the answer), so a policy
   * is trained on the answer its evaluation scores.
   */
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
 * final answer. Anything else (no block, an unclosed or repeated block, text before it, an empty answer)
 * is malformed. Every completion splits at its first </think>, the point DRO teacher-forces the reference
 * after: the chain is the text through it, the answer what follows. So a malformed completion's answer
 * is still what the policy wrote after its chain, and one without a </think> has none: all of it is chain.
 */
export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

export function parseThinkAnswer(text: string): ParsedCompletion {
  const close = text.indexOf(THINK_CLOSE);
  const end = close < 0 ? text.length : close;
  const open = text.indexOf(THINK_OPEN);
  // An opening tag belongs to the chain only before its end.
  const opened = open >= 0 && open < end;
  const reasoning = text.slice(opened ? open + THINK_OPEN.length : 0, end).trim();
  if (close < 0) return { chain: `${text}${THINK_CLOSE}`, reasoning, answer: '', wellFormed: false };
  const answer = text.slice(close + THINK_CLOSE.length).trim();
  const single = text.indexOf(THINK_OPEN, open + 1) < 0 && text.lastIndexOf(THINK_CLOSE) === close;
  const first = opened && text.slice(0, open).trim() === '';
  return { chain: text.slice(0, close + THINK_CLOSE.length), reasoning, answer, wellFormed: first && single && answer !== '' };
}

/** Prompt suffix that states the completion format, shared by every task's prompt. */
export const FORMAT_INSTRUCTION = `Think step by step inside ${THINK_OPEN}…${THINK_CLOSE}, then give only the final answer.`;
