// Where the shared datasets live: DRO_DATASETS_DIR, or ../shared/datasets next to the repository. The
// files are read in place and never copied into the repository.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function datasetsDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.DRO_DATASETS_DIR || join(REPO_ROOT, '..', 'shared', 'datasets'));
}

/** The path of a shared dataset file, or undefined (with the reason) when it is not there. */
export function sharedDatasetFile(...parts: string[]): { path: string; present: boolean } {
  const path = join(datasetsDir(), ...parts);
  return { path, present: existsSync(path) };
}
