// Rewards around R3: the length penalty on the policy's own answer and how it combines with R3 (DRO §3.3),
// and the ROUGE-1 / ROUGE-L F1 baselines of the paper's ParaRev comparison. The correctness baseline is each
// task's own answerCorrect on the answer Task.parseCompletion splits off (datasets/task.ts), the same check on
// the same answer as the accuracy metric, so reward and metric can never disagree.
// Our choice: R3 is divided by the reference length so rewards of long and short references are comparable.
import { assertFiniteVector, assertKnownKeys, assertNumberIn, DroInputError } from './stats.js';

/** 1 − β·|ref − ans| / ref: 1 for an answer as long as the reference, less as the lengths diverge. */
export function lengthPenalty(referenceLength: number, answerLength: number, beta: number): number {
  assertNumberIn(referenceLength, 'referenceLength', 0, Infinity, { minExclusive: true });
  assertNumberIn(answerLength, 'answerLength', 0, Infinity);
  assertNumberIn(beta, 'beta', 0, Infinity);
  return 1 - (beta * Math.abs(referenceLength - answerLength)) / referenceLength;
}

export interface CombineOptions {
  /** Reference length in tokens, L: R3 is a sum over L tokens, so it is divided by L. */
  referenceLength: number;
  /** Weight of the length penalty next to the per-token R3. */
  lengthWeight: number;
}

/** r3_i / L + lengthWeight · lengthPenalty_i for every chain. */
export function combineRewards(r3: readonly number[], lengthPenalties: readonly number[], options: CombineOptions): number[] {
  assertKnownKeys(options, ['referenceLength', 'lengthWeight'], 'combineRewards');
  assertNumberIn(options.referenceLength, 'combineRewards option referenceLength', 0, Infinity, { minExclusive: true });
  assertNumberIn(options.lengthWeight, 'combineRewards option lengthWeight', -Infinity, Infinity);
  assertFiniteVector(r3, 'r3');
  assertFiniteVector(lengthPenalties, 'lengthPenalties');
  if (r3.length !== lengthPenalties.length) throw new DroInputError(`r3 has ${r3.length} entries but lengthPenalties has ${lengthPenalties.length}`);
  return r3.map((r, i) => r / options.referenceLength + options.lengthWeight * lengthPenalties[i]!);
}

/**
 * The number an answer states, or undefined: accepts "1,234.5", "$12", "-3", "(3.2)" (accounting
 * negative), "1e-3" and "12.5%". `percent` says whether a % sign was present.
 */
export function parseNumericAnswer(text: string): { value: number; percent: boolean } | undefined {
  let t = text.trim().replace(/\.$/, '').trim();
  let negative = false;
  const paren = /^\((.*)\)$/.exec(t);
  if (paren) {
    negative = true;
    t = paren[1]!.trim();
  }
  const percent = t.endsWith('%');
  if (percent) t = t.slice(0, -1).trim();
  t = t.replace(/^([-+]?)\s*[$€£]\s*/, '$1').replace(/,(?=\d{3}(\D|$))/g, '');
  if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return undefined;
  const value = Number(t);
  return { value: negative ? -value : value, percent };
}

/** Lower-cased tokens split on anything that is not a letter or digit. */
export function rougeTokens(text: string): string[] {
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((t) => t !== '');
}

/** ROUGE-1 F1: unigram overlap (clipped counts) between prediction and reference; 0 if either is empty. */
export function rouge1F1(predicted: string, reference: string): number {
  return rougeNF1(predicted, reference, 1);
}

/** ROUGE-2 F1: bigram overlap (clipped counts); 0 if either side has no bigram (fewer than two tokens). */
export function rouge2F1(predicted: string, reference: string): number {
  return rougeNF1(predicted, reference, 2);
}

function ngrams(tokens: readonly string[], n: number): string[] {
  const out: string[] = [];
  // Tokens hold only letters and digits, so a space cannot make two different n-grams one key.
  for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(' '));
  return out;
}

function rougeNF1(predicted: string, reference: string, n: number): number {
  const pred = ngrams(rougeTokens(predicted), n);
  const ref = ngrams(rougeTokens(reference), n);
  if (pred.length === 0 || ref.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const t of ref) counts.set(t, (counts.get(t) ?? 0) + 1);
  let overlap = 0;
  for (const t of pred) {
    const left = counts.get(t) ?? 0;
    if (left > 0) {
      overlap++;
      counts.set(t, left - 1);
    }
  }
  if (overlap === 0) return 0;
  const precision = overlap / pred.length;
  const recall = overlap / ref.length;
  return (2 * precision * recall) / (precision + recall);
}

/**
 * ROUGE-L F1: from the longest common subsequence of the two token lists (P = LCS/|pred|,
 * R = LCS/|ref|); 0 if either is empty. Unlike ROUGE-1 it rewards keeping the reference's word order.
 */
export function rougeLF1(predicted: string, reference: string): number {
  const pred = rougeTokens(predicted);
  const ref = rougeTokens(reference);
  if (pred.length === 0 || ref.length === 0) return 0;
  // One DP row at a time: paragraphs are a few hundred tokens, so O(|pred|·|ref|) time and O(|ref|) memory.
  let prev = new Array<number>(ref.length + 1).fill(0);
  for (const p of pred) {
    const row = new Array<number>(ref.length + 1).fill(0);
    for (let j = 1; j <= ref.length; j++) {
      row[j] = p === ref[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!);
    }
    prev = row;
  }
  const lcs = prev[ref.length]!;
  if (lcs === 0) return 0;
  const precision = lcs / pred.length;
  const recall = lcs / ref.length;
  return (2 * precision * recall) / (precision + recall);
}
