// The shared JSONL reader on temp files: line numbering around blank lines, skip reports and strict messages,
// and that a visitor's own bug is not mistaken for a bad line.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRecord, readJsonlRecords } from './jsonl.js';
import { DatasetError } from './task.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jsonl-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readJsonlRecords', () => {
  it('visits objects with their 1-based line and reports bad lines', async () => {
    const path = join(dir, 'mixed.jsonl');
    await writeFile(path, ['{"n": 1}', '', '{"n": 2}', 'null', '{"n": 3}', ''].join('\n'));
    const seen: [number, unknown][] = [];
    const skipped = await readJsonlRecords(path, {}, (record, line) => {
      if (record.n === 3) throw new BadRecord('three is bad', 'n', 'r3');
      seen.push([line, record.n]);
    });
    expect(seen).toEqual([
      [1, 1],
      [3, 2],
    ]);
    expect(skipped).toEqual([
      { file: path, line: 4, message: 'not a JSON object' },
      { file: path, line: 5, message: 'three is bad', field: 'n', recordId: 'r3' },
    ]);
    await expect(readJsonlRecords(path, { strict: true }, () => {})).rejects.toThrow(new DatasetError(`${path}:4: not a JSON object`));
  });

  it('reports invalid UTF-8 by file and line instead of loading U+FFFD, and reads past a byte-order mark', async () => {
    const path = join(dir, 'bytes.jsonl');
    await writeFile(path, Buffer.concat([Buffer.from('\uFEFF{"n": 1}\n{"n": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n{"n": 3}\n')]));
    const seen: unknown[] = [];
    const skipped = await readJsonlRecords(path, {}, (record) => void seen.push(record.n));
    expect(seen).toEqual([1, 3]);
    expect(skipped).toEqual([{ file: path, line: 2, message: 'not valid UTF-8 text (re-save the file as UTF-8)' }]);
    await expect(readJsonlRecords(path, { strict: true }, () => {})).rejects.toThrow(new DatasetError(`${path}:2: not valid UTF-8 text (re-save the file as UTF-8)`));
  });

  it('lets errors other than BadRecord through unchanged', async () => {
    const path = join(dir, 'one.jsonl');
    await writeFile(path, '{"n": 1}\n');
    const bug = new TypeError('a bug in the visitor');
    await expect(readJsonlRecords(path, {}, () => { throw bug; })).rejects.toBe(bug);
  });
});
