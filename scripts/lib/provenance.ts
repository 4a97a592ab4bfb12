// Where a generated report's numbers came from: the commit of the code and the machine, named the same way in every report.
import { execFileSync } from 'node:child_process';
import { arch, cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * The checked-out commit (short), with "-dirty" when tracked files outside reports/ differ from it (the
 * numbers then come from code no commit holds), or "unknown" outside a git checkout.
 */
export function gitCommit(): string {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)reports') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '-dirty' : ''}`;
  } catch {
    return 'unknown';
  }
}

/** e.g. "2 × AMD EPYC, 24 GiB, x64, CPU only". */
export function machineLine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${arch()}, CPU only`;
}
