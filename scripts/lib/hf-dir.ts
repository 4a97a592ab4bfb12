// A Hugging Face model directory imported from a GGUF into a temporary folder, for the anchors that load
// the same weights with transformers; the folder is removed when the work is done, failed or not.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGgufToDir } from '../../engine/index.js';

/** Runs `body` with the imported directory, or with undefined (and no import) when `wanted` is false. */
export async function withImportedHfDir<T>(gguf: string, wanted: boolean, body: (dir: string | undefined) => Promise<T>): Promise<T> {
  if (!wanted) return body(undefined);
  const parent = await mkdtemp(join(tmpdir(), 'dro-bench-hf-'));
  try {
    // The importer creates its output folder and refuses an existing one.
    const dir = join(parent, 'model');
    await importGgufToDir(gguf, dir);
    return await body(dir);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}
