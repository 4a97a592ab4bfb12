// Creating local folders with errors that say what went wrong. Node's recursive mkdir loops forever
// where the kernel answers ENOENT for a folder whose parent exists (/proc), and reports a read-only
// filesystem as ENOENT; walking the levels ourselves gives the kernel's own answer, once.
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

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
