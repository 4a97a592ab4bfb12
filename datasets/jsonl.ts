// Reading a JSONL dataset file record by record, shared by every JSONL loader (ParaRev, SFT demonstrations):
// one place decides what a bad line is and how it is reported (a SkippedRecord, or DatasetError when strict).
import { readFile } from 'node:fs/promises';
import { DatasetError } from './task.js';
import type { LoadOptions, SkippedRecord } from './task.js';

/** Thrown by a record visitor for a line it cannot use; the reader turns it into a SkippedRecord. */
export class BadRecord extends Error {
  constructor(
    message: string,
    readonly field?: string,
    readonly recordId?: string,
  ) {
    super(message);
  }
}

/**
 * Calls `visit` with the JSON object on each non-blank line of `file` (lines are 1-based). A line that is not a
 * JSON object, or whose visit throws BadRecord, is skipped and returned; with `strict` the first one throws
 * DatasetError `<file>:<line> (<recordId>): <message>` instead. Other errors from `visit` propagate unchanged,
 * because they are bugs, not bad data.
 */
export async function readJsonlRecords(file: string, options: LoadOptions, visit: (record: Record<string, unknown>, line: number) => void): Promise<SkippedRecord[]> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch (error) {
    throw new DatasetError(`cannot read ${file}: ${(error as Error).message}`);
  }
  const skipped: SkippedRecord[] = [];
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    if (text.trim() === '') continue;
    const line = i + 1;
    try {
      visit(parseObject(text), line);
    } catch (error) {
      if (!(error instanceof BadRecord)) throw error;
      if (options.strict) throw new DatasetError(`${file}:${line}${error.recordId === undefined ? '' : ` (${error.recordId})`}: ${error.message}`);
      const record: SkippedRecord = { file, line, message: error.message };
      if (error.recordId !== undefined) record.recordId = error.recordId;
      if (error.field !== undefined) record.field = error.field;
      skipped.push(record);
    }
  }
  return skipped;
}

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BadRecord(`not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadRecord('not a JSON object');
  return value as Record<string, unknown>;
}
