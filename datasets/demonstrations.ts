// SFT demonstrations (prompt → completion pairs) from either source the training activity accepts: a JSONL file,
// or the synthetic task's generated completions, both in the same shape so the trainer treats them alike.
import { BadRecord, readJsonlRecords } from './jsonl.js';
import { sftCompletion, syntheticTask } from './synthetic.js';
import type { SyntheticExample } from './synthetic.js';
import type { LoadOptions, SkippedRecord } from './task.js';

export interface Demonstration {
  id: string;
  prompt: string;
  completion: string;
}

// Anything else is rejected: a misspelt "completion" would otherwise turn into a silently missing field.
const KNOWN_FIELDS = new Set(['id', 'prompt', 'completion']);

function requireText(record: Record<string, unknown>, field: 'prompt' | 'completion', recordId: string | undefined): string {
  const value = record[field];
  if (value === undefined) throw new BadRecord(`missing ${field}`, field, recordId);
  if (typeof value !== 'string') throw new BadRecord(`${field} is not a string`, field, recordId);
  if (value.trim() === '') throw new BadRecord(`${field} is empty`, field, recordId);
  return value;
}

/**
 * Reads one demonstration per line: `{"id"?: string, "prompt": string, "completion": string}`, ids defaulting to
 * `line-<n>` (1-based). Blank lines are ignored. A bad line (not a JSON object, an unknown field, a missing, empty
 * or non-string field, an id seen before, including a default one) is skipped and reported with its file, line
 * and field; with `strict` it throws a DatasetError naming file and line. Prompt and completion are kept verbatim.
 */
export async function loadDemonstrations(path: string, options: LoadOptions = {}): Promise<{ demonstrations: Demonstration[]; skipped: SkippedRecord[] }> {
  const demonstrations: Demonstration[] = [];
  const firstLine = new Map<string, number>();
  const skipped = await readJsonlRecords(path, options, (record, line) => {
    let recordId: string | undefined;
    if (record.id !== undefined) {
      if (typeof record.id !== 'string' || record.id.trim() === '') throw new BadRecord('id is not a non-empty string', 'id');
      recordId = record.id;
    }
    const unknown = Object.keys(record).find((key) => !KNOWN_FIELDS.has(key));
    if (unknown !== undefined) throw new BadRecord(`unknown field ${unknown}`, unknown, recordId);
    const prompt = requireText(record, 'prompt', recordId);
    const completion = requireText(record, 'completion', recordId);
    const id = recordId ?? `line-${line}`;
    const earlier = firstLine.get(id);
    if (earlier !== undefined) throw new BadRecord(`duplicate id ${id} (first on line ${earlier})`, 'id', id);
    firstLine.set(id, line);
    demonstrations.push({ id, prompt, completion });
  });
  return { demonstrations, skipped };
}

/** The synthetic task's SFT demonstrations: its prompt and sftCompletion's text (slipped at errorRate), keyed by example id. */
export function syntheticDemonstrations(examples: readonly SyntheticExample[], options: { seed: number; errorRate: number }): Demonstration[] {
  return examples.map((example) => ({ id: example.id, prompt: syntheticTask.formatPrompt(example), completion: sftCompletion(example, options).text }));
}
