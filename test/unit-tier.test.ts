// The unit tier starts no server: `vitest run dro/` in a child, given a fresh data folder and service ports
// nobody uses, leaves the folder empty and never has anything listening on those ports. (Give the unit
// project test/global-setup.ts and this fails: the setup starts both services there.)
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { portAnswers } from '../scripts/services/dev-services.js';
import { freeServicePorts } from './net.js';

const ROOT = join(import.meta.dirname, '..');
const VITEST = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');

it('`vitest run dro/` starts neither Temporal nor SeaweedFS and writes nothing to the data folder', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'dro-unit-tier-'));
  try {
    const ports = await freeServicePorts();
    const s3 = Number(ports.DRO_S3_PORT);
    const watched = [Number(ports.DRO_TEMPORAL_PORT), Number(ports.DRO_TEMPORAL_UI_PORT), s3, s3 + 1, s3 + 2, s3 + 3];
    // The child is a vitest of its own, not a worker of this one.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'FORCE_COLOR'));
    const child = spawn(process.execPath, [VITEST, 'run', 'dro/'], { cwd: ROOT, env: { ...env, ...ports, DRO_DATA_DIR: dataDir, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let running = true;
    void exited.then(() => (running = false));
    // Watched for the whole run: a server started and stopped again by a setup would answer in between.
    const answered = new Set<number>();
    let polls = 0;
    while (running) {
      for (const port of watched) if (await portAnswers(port, 200)) answered.add(port);
      polls++;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await exited, output).toBe(0);
    // It really ran the unit tests, and only as the unit project.
    expect(output).toMatch(/Test Files\D+\d+ passed/);
    expect(output).not.toContain('[test services]');
    expect(polls).toBeGreaterThan(0);
    expect([...answered]).toEqual([]);
    expect(await readdir(dataDir)).toEqual([]);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
  // dro/'s tests take about 8 s on 2 idle cores; the bound leaves room for a machine busy with other suites.
}, 300_000);
