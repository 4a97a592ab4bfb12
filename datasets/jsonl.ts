// Reading a JSONL dataset file record by record, shared by every JSONL loader (ParaRev, SFT demonstrations):
// one place decides what a bad line is and how it is reported (a SkippedRecord, or DatasetError when strict).
import { readFile } from 'node:fs/promises';
import { decodeUtf8, splitLines } from '../storage/local-files.js';
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
  let content: Buffer;
  try {
    content = await readFile(file);
  } catch (error) {
    throw new DatasetError(`cannot read ${file}: ${(error as Error).message}`);
  }
  const skipped: SkippedRecord[] = [];
  const lines = splitLines(content);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    try {
      // Decoded line by line and strictly: a bad byte is reported where it is, never replaced by U+FFFD.
      const text = decodeLine(lines[i]!, i === 0);
      if (text.trim() === '') continue;
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

function decodeLine(bytes: Uint8Array, first: boolean): string {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw new BadRecord('not valid UTF-8 text (re-save the file as UTF-8)');
  // A byte-order mark some editors write: not part of the first record.
  return first && text.startsWith('\uFEFF') ? text.slice(1) : text;
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
