// Local files people make or name: folders created with errors that say what went wrong, and JSON files
// read the way people write them. Node's recursive mkdir loops forever
// where the kernel answers ENOENT for a folder whose parent exists (/proc), and reports a read-only
// filesystem as ENOENT; walking the levels ourselves gives the kernel's own answer, once.
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

const REASONS: Record<string, string> = {
  EROFS: 'the filesystem is read-only',
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'a file of that name is in the way',
  // The parent exists, so this is the filesystem refusing new folders (a virtual one such as /proc).
  ENOENT: 'this filesystem does not allow new folders there',
};

/** An error naming the folder and, in words, why it cannot be made; the errno code stays on `code`. */
export function folderError(path: string, err: unknown): Error {
  const code = (err as { code?: unknown }).code;
  const reason = typeof code === 'string' ? (REASONS[code] ?? (err as Error).message) : String(err);
  const wrapped = new Error(`cannot create folder ${path}: ${reason}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: err });
  (wrapped as { code?: unknown }).code = code;
  return wrapped;
}

/** `mkdir -p` that ends: each missing level is created once; a level removed meanwhile by someone else is retried a few times. */
export async function makeDirectories(path: string): Promise<void> {
  const target = resolve(path);
  for (let attempt = 0; ; attempt++) {
    const missing: string[] = [];
    let current = target;
    for (;;) {
      const info = await stat(current).catch((err: unknown) => {
        if (isErrno(err, 'ENOENT')) return undefined;
        throw folderError(path, err);
      });
      if (info?.isDirectory()) break;
      if (info) throw folderError(path, { code: current === target ? 'EEXIST' : 'ENOTDIR' });
      const parent = dirname(current);
      if (parent === current) break;
      missing.push(current);
      current = parent;
    }
    let raced = false;
    for (const dir of missing.reverse()) {
      try {
        await mkdir(dir);
      } catch (err) {
        if (isErrno(err, 'EEXIST') && (await stat(dir).then((s) => s.isDirectory(), () => false))) continue;
        // ENOENT with the parent gone means a concurrent delete; with the parent there it is the filesystem's refusal.
        if (isErrno(err, 'ENOENT') && attempt < 4 && !(await stat(dirname(dir)).then((s) => s.isDirectory(), () => false))) {
          raced = true;
          break;
        }
        throw folderError(path, err);
      }
    }
    if (!raced) return;
  }
}

/** The same for scripts that run before anything else (dev services): no concurrent deleter to retry for. */
export function makeDirectoriesSync(path: string, mode?: number): void {
  const missing: string[] = [];
  for (let current = resolve(path); ; current = dirname(current)) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(current).isDirectory();
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw folderError(path, err);
      if (dirname(current) === current) break;
      missing.push(current);
      continue;
    }
    if (isDirectory) break;
    throw folderError(path, { code: current === resolve(path) ? 'EEXIST' : 'ENOTDIR' });
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, { mode });
    } catch (err) {
      throw folderError(path, err);
    }
  }
}

/** A file that is there but is not the UTF-8 or JSON it should be; the message names the file and where. */
export class FileFormatError extends Error {
  override readonly name = 'FileFormatError';
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `bytes` as UTF-8, strictly (a byte-order mark kept), or undefined where a byte is not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The lines of a file's bytes, split at each \n (which no multi-byte UTF-8 sequence contains). */
export function splitLines(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let nl = bytes.indexOf(0x0a); nl >= 0; nl = bytes.indexOf(0x0a, start)) {
    lines.push(bytes.subarray(start, nl));
    start = nl + 1;
  }
  lines.push(bytes.subarray(start));
  return lines;
}

/**
 * UTF-8 text of a file, strictly: a bad byte is an error naming the file and its line (never a silent
 * U+FFFD), and a leading byte-order mark, which many editors write and nobody sees, is dropped.
 */
export function decodeUtf8File(bytes: Uint8Array, path: string): string {
  const text = decodeUtf8(bytes);
  if (text === undefined) {
    const line = splitLines(bytes).findIndex((l) => decodeUtf8(l) === undefined) + 1;
    throw new FileFormatError(`${path}: line ${line} is not valid UTF-8 text (re-save the file as UTF-8)`);
  }
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/** JSON from `text` (the contents of `path`); a syntax error names the file and, where V8 says where, the line and column. */
export function parseJsonText(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = / in JSON at position (\d+)/.exec(message);
    if (!at) throw new FileFormatError(`${path} is not valid JSON: ${message}`, { cause: err });
    const before = text.slice(0, Number(at[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new FileFormatError(`${path} is not valid JSON: ${message.slice(0, at.index)} at line ${line}, column ${column}`, { cause: err });
  }
}

/** Reads a JSON file: unreadable, not UTF-8 and not JSON are three errors, each naming the file. */
export async function readJsonFile(path: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseJsonText(decodeUtf8File(bytes, path), path);
}

/** Refused when the directory to create exists and is not empty. */
export class DirectoryExistsError extends Error {
  override readonly name = 'DirectoryExistsError';
}

/**
 * Creates the directory `out` with what `fill` writes into it: filled as a sibling staging directory and
 * renamed into place, so `out` appears whole or not at all (a failure removes the staging directory), and
 * an existing non-empty `out` is refused with DirectoryExistsError, never overwritten.
 */
export async function createDirectoryWhole(out: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const staging = `${out}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await makeDirectories(staging);
  try {
    await fill(staging);
    // rename(2) replaces an empty directory and fails on a non-empty one, so a racing writer loses nothing.
    await rename(staging, out).catch((err: unknown) => {
      if (isErrno(err, 'ENOTEMPTY') || isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) throw new DirectoryExistsError(`${out} already exists: choose a new output directory (nothing was overwritten)`, { cause: err });
      throw err;
    });
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** `files` (name → bytes) as the new directory `out` (createDirectoryWhole). */
export function writeNewDirectory(out: string, files: Record<string, Uint8Array | string>): Promise<void> {
  return createDirectoryWhole(out, async (dir) => {
    for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data);
  });
}
