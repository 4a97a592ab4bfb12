// A Python venv with PyTorch, transformers and PEFT (pinned in scripts/dev/python-transformers.txt), made on
// first use in a git-ignored cache, for the checks that load our exported models with the tools users load them
// with. DRO_TRANSFORMERS_VENV names an existing one instead. scripts/dev/transformers-venv.sh makes the same venv
// (same marker) from a shell, holding `<venv>.installing` (its PID) meanwhile; a caller here waits for it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../services/dev-services.js';

const run = promisify(execFile);
const REQUIREMENTS = join(REPO_ROOT, 'scripts', 'dev', 'python-transformers.txt');
/** How long to wait for an install another process started (5 GB of wheels). */
const INSTALL_WAIT_MS = 20 * 60_000;

/** Whether the lock file's PID is a live process: a lock left by a killed install does not count. */
function installerAlive(pid: string): boolean {
  const n = Number(pid.trim());
  if (!Number.isSafeInteger(n) || n <= 0) return false;
  try {
    process.kill(n, 0);
    return true;
  } catch {
    return false;
  }
}

/** The venv's python, creating the venv (or finishing a half-made one) when needed; fails with pip's own words. */
export async function ensureTransformersVenv(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.DRO_TRANSFORMERS_VENV) return join(env.DRO_TRANSFORMERS_VENV, 'bin', 'python');
  const dir = join(REPO_ROOT, '.cache', 'transformers-venv');
  const python = join(dir, 'bin', 'python');
  // A marker with the requirements' digest: a venv made for other pins, or cut short, is made again.
  const marker = join(dir, 'dro-requirements.sha256');
  const wanted = createHash('sha256').update(await readFile(REQUIREMENTS)).digest('hex');
  const ready = async (): Promise<boolean> => existsSync(python) && (await readFile(marker, 'utf8').catch(() => '')) === wanted;
  if (await ready()) return python;
  // .ci/run starts the install before the tests, beside the other set-up: wait for it rather than start over.
  const lock = `${dir}.installing`;
  const deadline = Date.now() + INSTALL_WAIT_MS;
  while (installerAlive(await readFile(lock, 'utf8').catch(() => ''))) {
    if (Date.now() > deadline) throw new Error(`the transformers venv install of ${lock} did not finish within ${INSTALL_WAIT_MS / 60_000} minutes`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  if (await ready()) return python;
  await rm(dir, { recursive: true, force: true });
  try {
    await run('python3', ['-m', 'venv', dir]);
    await run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', '-r', REQUIREMENTS], { maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot make the transformers venv in ${dir}: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' ')}`, { cause: err });
  }
  await writeFile(marker, wanted);
  return python;
}
