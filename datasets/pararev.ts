// The ParaRev task (Jourdan et al., 2025): revise a scientific paragraph following an annotator's
// instruction; loads the ParaRev test paragraphs that ship inside ParaReval and scores revisions.
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { rouge1F1, rougeLF1 } from '../dro/rewards.js';
import { BadRecord, readJsonlRecords } from './jsonl.js';
import type { JudgeItem } from './llm-judge.js';
import { sharedDatasetFile } from './paths.js';
import { DatasetError, FORMAT_INSTRUCTION, parseThinkAnswer } from './task.js';
import type { Example, LoadOptions, LoadResult, ParsedCompletion, Prediction, SkippedRecord, Task, TaskSource } from './task.js';

/**
 * One revision task. Field mapping from the JSONL records (both files share it):
 * `id_paragraph` → paragraphId, `pararev_annot` → annotation, `pararev_annotator` → annotator,
 * `instruction` → instruction, `labels` → labels, `original_paragraph` → original,
 * `reference_paragraph` (the authors' own revision) → revised. The ParaReval judgement file adds
 * `model_A`/`model_A_paragraph` and `model_B`/`model_B_paragraph`, collected in modelRevisions.
 * The data has no surrounding-context field, so there is no `context`.
 */
export interface PararevExample extends Example {
  /** `<id_paragraph>#<pararev_annot>`: one paragraph can carry two annotators' instructions. */
  id: string;
  paragraphId: string;
  annotation?: string;
  annotator?: string;
  instruction: string;
  /** ParaRev intention labels such as `Rewriting_light` or `Concision` (up to two; may be empty). */
  labels: string[];
  original: string;
  revised: string;
  /** Revisions by the models ParaReval compared (model name → paragraph); empty without that file. */
  modelRevisions: Record<string, string>;
}

/** The two files of the shared folder, read in this order (the task file first, then the judgements). */
export const PARAREV_FILES = ['pararev_test_subset_from_parareval.jsonl', 'parareval_second_annotation.jsonl'] as const;

/** The shared ParaRev folder as a task source (both files). */
export function pararevSource(): TaskSource {
  return { kind: 'file', path: sharedDatasetFile('pararev').path };
}

export interface PararevLoadOptions extends LoadOptions {
  /** Where the count of skipped records is reported; console.warn by default. */
  warn?: (message: string) => void;
}

interface ParsedRecord {
  example: Omit<PararevExample, 'modelRevisions'>;
  modelRevisions: Record<string, string>;
}

function requireText(record: Record<string, unknown>, field: string, recordId: string | undefined): string {
  const value = record[field];
  if (typeof value !== 'string') throw new BadRecord(value === undefined ? `missing ${field}` : `${field} is not a string`, field, recordId);
  if (value.trim() === '') throw new BadRecord(`${field} is empty`, field, recordId);
  return value;
}

function optionalText(record: Record<string, unknown>, field: string, recordId: string | undefined): string | undefined {
  const value = record[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw new BadRecord(`${field} is not a non-empty string`, field, recordId);
  return value;
}

function parseRecord(record: Record<string, unknown>): ParsedRecord {
  const paragraphId = requireText(record, 'id_paragraph', undefined);
  const annotation = optionalText(record, 'pararev_annot', paragraphId);
  const id = annotation === undefined ? paragraphId : `${paragraphId}#${annotation}`;
  const annotator = optionalText(record, 'pararev_annotator', id);
  const instruction = requireText(record, 'instruction', id);
  const original = requireText(record, 'original_paragraph', id);
  const revised = requireText(record, 'reference_paragraph', id);
  const rawLabels = record.labels ?? [];
  if (!Array.isArray(rawLabels) || !rawLabels.every((l): l is string => typeof l === 'string')) {
    throw new BadRecord('labels is not a list of strings', 'labels', id);
  }
  const modelRevisions: Record<string, string> = {};
  for (const side of ['A', 'B']) {
    const model = optionalText(record, `model_${side}`, id);
    const paragraph = optionalText(record, `model_${side}_paragraph`, id);
    if ((model === undefined) !== (paragraph === undefined)) {
      throw new BadRecord(`model_${side} and model_${side}_paragraph must come together`, model === undefined ? `model_${side}` : `model_${side}_paragraph`, id);
    }
    if (model !== undefined && paragraph !== undefined) modelRevisions[model] = paragraph;
  }
  const example = { id, paragraphId, instruction, labels: [...rawLabels], original, revised, ...(annotation === undefined ? {} : { annotation }), ...(annotator === undefined ? {} : { annotator }) };
  return { example, modelRevisions };
}

/** The files a source names: a folder means both ParaRev files, a file means just that one. */
async function sourceFiles(source: TaskSource): Promise<string[]> {
  if (source.kind !== 'file') throw new DatasetError(`pararev reads files; got a "${source.kind}" source`);
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(source.path)).isDirectory();
  } catch (error) {
    throw new DatasetError(`cannot read ${source.path}: ${(error as Error).message}`);
  }
  if (!isDirectory) return [source.path];
  const present = new Set(await readdir(source.path));
  const missing = PARAREV_FILES.filter((f) => !present.has(f));
  if (missing.length > 0) throw new DatasetError(`cannot read ${join(source.path, missing[0]!)}: not in the folder`);
  return PARAREV_FILES.map((f) => join(source.path, f));
}

/**
 * Loads ParaRev examples from one file or the shared folder. A line of the judgement file repeats its
 * paragraph's task fields, so records with the same id are merged: the first one defines the task, later
 * ones add their model revisions, and one whose task fields disagree is skipped (field = the first
 * disagreeing field). Blank lines are ignored.
 */
export async function loadPararev(source: TaskSource, options: PararevLoadOptions = {}): Promise<LoadResult<PararevExample>> {
  const files = await sourceFiles(source);
  const byId = new Map<string, PararevExample>();
  const skipped: SkippedRecord[] = [];
  for (const file of files) {
    const bad = await readJsonlRecords(file, options, (record) => {
      const { example, modelRevisions } = parseRecord(record);
      const known = byId.get(example.id);
      if (known === undefined) {
        byId.set(example.id, { ...example, modelRevisions });
        return;
      }
      const conflict = (['instruction', 'original', 'revised'] as const).find((f) => known[f] !== example[f]);
      if (conflict !== undefined) throw new BadRecord(`${conflict} disagrees with an earlier record of the same id`, conflict, example.id);
      Object.assign(known.modelRevisions, modelRevisions);
    });
    skipped.push(...bad);
  }
  if (skipped.length > 0) {
    const names = [...new Set(skipped.map((s) => basename(s.file)))].join(', ');
    (options.warn ?? console.warn)(`pararev: skipped ${skipped.length} bad record(s) in ${names}`);
  }
  return { examples: [...byId.values()], skipped };
}

/** Whitespace collapsed and trimmed, so re-wrapped but otherwise identical paragraphs compare equal. */
function normaliseSpace(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function wordCount(text: string): number {
  const t = text.trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

function indexExamples(examples: readonly PararevExample[]): Map<string, PararevExample> {
  return new Map(examples.map((e) => [e.id, e]));
}

function exampleFor(byId: Map<string, PararevExample>, id: string): PararevExample {
  const example = byId.get(id);
  if (example === undefined) throw new Error(`pararev: prediction for unknown example id "${id}"`);
  return example;
}

export const pararevTask: Task<PararevExample> = {
  name: 'pararev',

  load(source: TaskSource, options?: LoadOptions): Promise<LoadResult<PararevExample>> {
    return loadPararev(source, options);
  },

  formatPrompt(example: PararevExample): string {
    const parts = ['Revise the following paragraph from a scientific paper.', `Revision instruction: ${example.instruction}`];
    // Labels are part of ParaRev's annotation and tell the model how deep the revision should go.
    if (example.labels.length > 0) parts.push(`Kind of revision: ${example.labels.map((l) => l.replace(/_/g, ' ')).join(', ')}`);
    parts.push(`Original paragraph:\n${example.original}`, 'The final answer is the full revised paragraph and nothing else.', FORMAT_INSTRUCTION);
    return parts.join('\n\n');
  },

  referenceOutcome(example: PararevExample): string {
    return example.revised;
  },

  parseCompletion(text: string): ParsedCompletion {
    return parseThinkAnswer(text);
  },

  /**
   * Over the first completion of each prediction (its best-effort answer, even when malformed):
   * mean ROUGE-1 and ROUGE-L F1 against the authors' revision, mean word-count ratio (prediction /
   * reference; may exceed 1), the share of answers equal to the original paragraph up to whitespace
   * (the model did not revise), and the share of malformed completions. No predictions → all 0.
   */
  metrics(predictions: readonly Prediction[], examples: readonly PararevExample[]): Record<string, number> {
    const byId = indexExamples(examples);
    const sums = { rouge1F1: 0, rougeLF1: 0, lengthRatio: 0, unchanged: 0, malformed: 0 };
    for (const prediction of predictions) {
      const example = exampleFor(byId, prediction.exampleId);
      const parsed = parseThinkAnswer(prediction.completions[0] ?? '');
      sums.rouge1F1 += rouge1F1(parsed.answer, example.revised);
      sums.rougeLF1 += rougeLF1(parsed.answer, example.revised);
      // The loader guarantees a non-empty reference, so the ratio is finite.
      sums.lengthRatio += wordCount(parsed.answer) / wordCount(example.revised);
      if (normaliseSpace(parsed.answer) === normaliseSpace(example.original)) sums.unchanged++;
      if (!parsed.wellFormed) sums.malformed++;
    }
    const n = predictions.length;
    const mean = (sum: number): number => (n === 0 ? 0 : sum / n);
    return {
      rouge1F1: mean(sums.rouge1F1),
      rougeLF1: mean(sums.rougeLF1),
      lengthRatio: mean(sums.lengthRatio),
      unchanged: mean(sums.unchanged),
      malformed: mean(sums.malformed),
    };
  },
};

/**
 * Items for the LLM judge: each prediction's answer (first completion) against a baseline model's
 * revision from ParaReval, with the authors' revision as the golden one. Examples without a revision
 * by that model are left out and their ids returned.
 */
export function pararevJudgeItems(
  predictions: readonly Prediction[],
  examples: readonly PararevExample[],
  baselineModel: string,
): { items: JudgeItem[]; exampleIds: string[]; missingBaseline: string[] } {
  const byId = indexExamples(examples);
  const items: JudgeItem[] = [];
  const exampleIds: string[] = [];
  const missingBaseline: string[] = [];
  for (const prediction of predictions) {
    const example = exampleFor(byId, prediction.exampleId);
    const baseline = example.modelRevisions[baselineModel];
    if (baseline === undefined) {
      missingBaseline.push(example.id);
      continue;
    }
    const candidate = parseThinkAnswer(prediction.completions[0] ?? '').answer;
    items.push({ instruction: example.instruction, original: example.original, golden: example.revised, candidate, baseline });
    exampleIds.push(example.id);
  }
  return { items, exampleIds, missingBaseline };
}
