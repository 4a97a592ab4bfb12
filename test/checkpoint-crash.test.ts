// Crash consistency for real: a child process is SIGKILLed at chosen points of commitCheckpoint, on
// the directory store and on SeaweedFS; no interrupted commit may ever become the latest checkpoint.
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { checkpointFileKey, commitCheckpoint, latestCheckpoint, listCheckpoints, loadCheckpoint } from '../storage/checkpoints.js';
import { TEMP_PREFIX } from '../storage/blob-store.js';
import { openBlobStore } from '../storage/open.js';
import type { BlobStore } from '../storage/blob-store.js';
import { patternBytes, sha256 } from './blob-store-suite.js';
import { storeKinds } from './services-env.js';

const child = join(import.meta.dirname, 'fixtures', 'commit-child.ts');
const tsx = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsx');

/**
 * Runs the child committing `step`; answers "go" to every event until `killAt` matches one, then
 * SIGKILLs it (after `delayMs`, letting the pending write run for a while). Returns the events seen.
 */
async function commitInChild(uri: string, runId: string, step: number, seed: number, killAt?: string, delayMs = 0): Promise<string[]> {
  const proc = spawn(tsx, [child, uri, runId, String(step), String(seed)], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const events: string[] = [];
  for await (const line of createInterface({ input: proc.stdout })) {
    events.push(line);
    if (line === killAt) {
      if (delayMs > 0) {
        proc.stdin.write('go\n');
        await new Promise((r) => setTimeout(r, delayMs));
      }
      proc.kill('SIGKILL');
      break;
    }
    if (line !== 'committed') proc.stdin.write('go\n');
  }
  const { code, signal } = await exited;
  if (killAt === undefined) expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  else expect(signal, `kill at ${killAt}: events ${events.join(', ')}; ${stderr}`).toBe('SIGKILL');
  return events;
}

/** Every in-flight-write temporary under a directory store's root. */
async function temporariesUnder(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((p) => p.split(sep).some((s) => s.startsWith(TEMP_PREFIX) || s === '.partial'));
}

const stores = storeKinds('crash');

describe.each(stores)('SIGKILL during commitCheckpoint: %s', (_name, makeUri) => {
  it('never leaves a checkpoint that latestCheckpoint returns, at any point before the manifest lands', async () => {
    const uri = await makeUri();
    const store = await openBlobStore(uri);
    try {
      const first = await commitCheckpoint(store, 'run', 1, { 'model.safetensors': patternBytes(1000, 1) }, { step: 1 });
      // Every point where the child can die between "nothing written" and "manifest written".
      const killPoints: [string, number][] = [
        ['start model.safetensors', 0],
        ['start model.safetensors', 150], // in the middle of a 24 MiB write
        ['done model.safetensors', 0],
        ['start optimizer.safetensors', 40],
        ['done state.json', 0], // every file written, manifest not yet
        ['start manifest.json', 0],
      ];
      for (const [killAt, delayMs] of killPoints) {
        const events = await commitInChild(uri, 'run', 2, 7, killAt, delayMs);
        expect(events.at(-1), `child reached ${killAt}`).toBe(killAt);
        expect((await latestCheckpoint(store, 'run'))?.step, `after kill at ${killAt}+${delayMs}ms`).toBe(first.step);
        const two = (await listCheckpoints(store, 'run')).find((c) => c.step === 2);
        if (two) expect(two).toMatchObject({ valid: false, reason: 'missing manifest' });
        await expect(loadCheckpoint(store, 'run', 2)).rejects.toThrow(/missing manifest/);
        // The killed writer's temporary (if it had one) is gone once its folder was listed: nothing leaks.
        if (!uri.startsWith('s3://')) expect(await temporariesUnder(uri), `after kill at ${killAt}`).toEqual([]);
      }
      // A retry after the crashes (what a Temporal activity retry does) completes the step.
      const events = await commitInChild(uri, 'run', 2, 7);
      expect(events.at(-1)).toBe('committed');
      expect((await latestCheckpoint(store, 'run'))?.step).toBe(2);
      const loaded = await loadCheckpoint(store, 'run', 2);
      expect(sha256(loaded.files['model.safetensors']!)).toBe(sha256(patternBytes(24 * 1024 * 1024, 7)));
      expect(loaded.state).toEqual({ step: 2, seed: 7 });
    } finally {
      await store.close();
    }
  });

  it('a flipped byte in a committed file invalidates that step with the reason, and latest falls back', async () => {
    const store: BlobStore = await openBlobStore(await makeUri());
    try {
      for (const step of [1, 2]) await commitCheckpoint(store, 'run', step, { 'model.safetensors': patternBytes(3 * 1024 * 1024, step) }, { step });
      const key = await checkpointFileKey(store, 'run', 2, 'model.safetensors');
      const bytes = await store.get(key);
      const flipped = new Uint8Array(bytes);
      flipped[123_456] = flipped[123_456]! ^ 0x80;
      await store.put(key, flipped);
      const listing = await listCheckpoints(store, 'run');
      expect(listing.map((c) => c.valid)).toEqual([true, false]);
      expect(listing[1]!.reason).toMatch(/^sha256 mismatch for model\.safetensors: manifest [0-9a-f]{64}, file [0-9a-f]{64}$/);
      expect((await latestCheckpoint(store, 'run'))?.step).toBe(1);
      await expect(loadCheckpoint(store, 'run', 2)).rejects.toThrow(/sha256 mismatch for model\.safetensors/);
    } finally {
      await store.close();
    }
  });
});
