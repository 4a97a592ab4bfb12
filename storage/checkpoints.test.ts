// The checkpoint protocol on a directory store: layout, validity reasons, fallback, retention, names.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile, truncate, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { patternBytes, sha256 } from '../test/blob-store-suite.js';
import {
  applyRetention,
  checkpointFileKey,
  checkpointPrefix,
  commitCheckpoint,
  isManifestKey,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  loadLatestCheckpoint,
  type CheckpointManifest,
} from './checkpoints.js';
import { DirectoryBlobStore } from './dir-store.js';

const roots: string[] = [];
afterAll(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});

let store: DirectoryBlobStore;
beforeEach(async () => {
  const root = await mkdtemp(join(tmpdir(), 'dro-ckpt-'));
  roots.push(root);
  store = new DirectoryBlobStore(root);
});

const files = (seed: number): Record<string, Uint8Array> => ({
  'model.safetensors': patternBytes(4096 + seed, seed),
  'optimizer.safetensors': patternBytes(8192 + seed, seed + 100),
});
/** Where a committed checkpoint keeps `name` on disk (files are stored by content under objects/). */
async function fileOnDisk(step: number, name: string): Promise<string> {
  const key = name === 'manifest.json' ? `${checkpointPrefix('run-1', step)}manifest.json` : await checkpointFileKey(store, 'run-1', step, name);
  return join(store.root, ...key.split('/'));
}
const objectKey = (data: Uint8Array | Buffer): string => `objects/${sha256(data)}`;

describe('commitCheckpoint and loadCheckpoint', () => {
  it('writes the checkpoint layout of docs/architecture.md with a manifest of every file, and loads it back verified', async () => {
    const f = files(1);
    const state = { step: 12, cursor: { epoch: 0, index: 7 }, config: { lr: 1e-5 } };
    const ref = await commitCheckpoint(store, 'run-1', 12, f, state);
    expect(ref.prefix).toBe('run-1/checkpoints/00000012/');
    const stateBytes = await readFile(await fileOnDisk(12, 'state.json'));
    expect((await store.list('run-1/')).map((b) => b.key)).toEqual(
      ['manifest.json', ...[f['model.safetensors']!, f['optimizer.safetensors']!, stateBytes].map(objectKey).sort()].map((k) => `run-1/checkpoints/00000012/${k}`),
    );
    const manifest = JSON.parse(await readFile(await fileOnDisk(12, 'manifest.json'), 'utf8')) as CheckpointManifest;
    expect(manifest.formatVersion).toBe(1);
    expect(manifest.runId).toBe('run-1');
    expect(manifest.step).toBe(12);
    expect(Number.isNaN(Date.parse(manifest.createdAt))).toBe(false);
    expect(manifest.files['model.safetensors']).toEqual({ sha256: sha256(f['model.safetensors']!), bytes: 4097, object: objectKey(f['model.safetensors']!) });
    expect(manifest.files['state.json']).toEqual({ sha256: sha256(stateBytes), bytes: stateBytes.byteLength, object: objectKey(stateBytes) });

    const loaded = await loadCheckpoint(store, 'run-1', 12);
    expect(loaded.state).toEqual(state);
    expect(Object.keys(loaded.files).sort()).toEqual(['model.safetensors', 'optimizer.safetensors']);
    expect(sha256(loaded.files['optimizer.safetensors']!)).toBe(sha256(f['optimizer.safetensors']!));
  });

  it('is idempotent for the same content and refuses different content for a committed step', async () => {
    const first = await commitCheckpoint(store, 'run-1', 3, files(1), { a: 1 });
    const again = await commitCheckpoint(store, 'run-1', 3, files(1), { a: 1 });
    expect(again.files).toEqual(first.files);
    await expect(commitCheckpoint(store, 'run-1', 3, files(2), { a: 1 })).rejects.toThrow(/already committed with different content/);
    expect(sha256((await loadCheckpoint(store, 'run-1', 3)).files['model.safetensors']!)).toBe(sha256(files(1)['model.safetensors']!));
  });

  it('replaces the leftovers of an interrupted commit, including stray files', async () => {
    await store.put('run-1/checkpoints/00000004/model.safetensors', patternBytes(10, 9));
    await store.put('run-1/checkpoints/00000004/stray.bin', patternBytes(10, 9));
    const ref = await commitCheckpoint(store, 'run-1', 4, files(4), { s: 4 });
    expect((await store.list('run-1/checkpoints/00000004/')).map((b) => b.key.slice(ref.prefix.length))).toEqual(
      ['manifest.json', ...Object.values(ref.files).map((e) => e.object!)].sort(),
    );
    expect((await listCheckpoints(store, 'run-1'))[0]).toMatchObject({ step: 4, valid: true });
  });

  it('rejects bad run ids, file names, steps and states before writing anything', async () => {
    for (const runId of ['', '..', 'a/b', '../x', 'a..b', '.hidden', 'x'.repeat(129), 'sp ace']) {
      await expect(commitCheckpoint(store, runId, 1, files(1), {}), runId).rejects.toThrow(/invalid run id/);
    }
    for (const name of ['a/b', '..', '../x', '', 'x'.repeat(129)]) {
      await expect(commitCheckpoint(store, 'run-1', 1, { [name]: new Uint8Array(1) }, {}), name).rejects.toThrow(/invalid checkpoint file name/);
    }
    await expect(commitCheckpoint(store, 'run-1', 1, { 'manifest.json': new Uint8Array(1) }, {})).rejects.toThrow(/reserved/);
    await expect(commitCheckpoint(store, 'run-1', 1, { 'state.json': new Uint8Array(1) }, {})).rejects.toThrow(/reserved/);
    for (const step of [-1, 1.5, 100_000_000, Number.NaN]) {
      await expect(commitCheckpoint(store, 'run-1', step, files(1), {}), String(step)).rejects.toThrow(/invalid checkpoint step/);
    }
    await expect(commitCheckpoint(store, 'run-1', 1, files(1), { big: 10n })).rejects.toThrow(/cannot be written as JSON/);
    expect(await store.list('')).toEqual([]);
  });
});

describe('validity, latestCheckpoint and listCheckpoints', () => {
  beforeEach(async () => {
    for (const step of [1, 2, 3]) await commitCheckpoint(store, 'run-1', step, files(step), { step });
  });

  it('lists every step as valid and returns the highest as latest', async () => {
    expect(await listCheckpoints(store, 'run-1')).toEqual([1, 2, 3].map((step) => ({ step, prefix: checkpointPrefix('run-1', step), valid: true })));
    expect((await latestCheckpoint(store, 'run-1'))?.step).toBe(3);
    expect(await latestCheckpoint(store, 'other-run')).toBeUndefined();
  });

  it('loadLatestCheckpoint loads the newest whole checkpoint reading each file once, and reports the damaged newer ones', async () => {
    await unlink(await fileOnDisk(3, 'optimizer.safetensors'));
    const path = await fileOnDisk(2, 'model.safetensors');
    const bytes = await readFile(path);
    bytes[7] = bytes[7]! ^ 0x01;
    await writeFile(path, bytes);
    const reads: string[] = [];
    const counting = new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === 'get' || prop === 'getStream'
          ? (key: string, ...rest: unknown[]) => {
              reads.push(key);
              return (Reflect.get(target, prop, receiver) as (...a: unknown[]) => unknown).call(target, key, ...rest);
            }
          : (Reflect.get(target, prop, receiver) as unknown),
    });
    const { checkpoint, skipped } = await loadLatestCheckpoint(counting, 'run-1');
    expect(checkpoint?.ref.step).toBe(1);
    expect(checkpoint!.state).toEqual({ step: 1 });
    expect(sha256(checkpoint!.files['model.safetensors']!)).toBe(sha256(files(1)['model.safetensors']!));
    expect(skipped.map((c) => [c.step, c.reason])).toEqual([
      [3, 'missing file optimizer.safetensors'],
      [2, expect.stringMatching(/^sha256 mismatch for model\.safetensors: manifest [0-9a-f]{64}, file [0-9a-f]{64}$/)],
    ]);
    const step1 = reads.filter((k) => k.startsWith(checkpointPrefix('run-1', 1)));
    // Each file once: the manifest and the three objects it names.
    const named = Object.values(checkpoint!.ref.files).map((e) => checkpointPrefix('run-1', 1) + e.object!);
    expect(step1.sort()).toEqual([`${checkpointPrefix('run-1', 1)}manifest.json`, ...named].sort());
    expect(await loadLatestCheckpoint(store, 'other-run')).toEqual({ checkpoint: undefined, skipped: [] });
  });

  it('a storage failure is an error, never an invalid checkpoint or a fallback', async () => {
    const outage = new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === 'get' || prop === 'getStream' ? () => Promise.reject(new Error('connect ECONNREFUSED')) : (Reflect.get(target, prop, receiver) as unknown),
    });
    await expect(loadLatestCheckpoint(outage, 'run-1')).rejects.toThrow('connect ECONNREFUSED');
    await expect(listCheckpoints(outage, 'run-1')).rejects.toThrow('connect ECONNREFUSED');
    await expect(loadCheckpoint(outage, 'run-1', 3)).rejects.toThrow(/^connect ECONNREFUSED$/);
  });

  it('a flipped byte makes the step invalid with the reason, and latest falls back', async () => {
    const path = await fileOnDisk(3, 'model.safetensors');
    const bytes = await readFile(path);
    bytes[100] = bytes[100]! ^ 0x01;
    await writeFile(path, bytes);
    const listing = await listCheckpoints(store, 'run-1');
    expect(listing[2]).toMatchObject({ step: 3, valid: false });
    expect(listing[2]!.reason).toMatch(/^sha256 mismatch for model\.safetensors/);
    // Sizes still match: only the sha256 check can see this.
    expect((await listCheckpoints(store, 'run-1', { verify: 'size' }))[2]!.valid).toBe(true);
    expect((await latestCheckpoint(store, 'run-1'))?.step).toBe(2);
    await expect(loadCheckpoint(store, 'run-1', 3)).rejects.toThrow(/sha256 mismatch for model\.safetensors/);
  });

  it('names each kind of damage: missing manifest, missing file, size mismatch, unreadable JSON', async () => {
    await unlink(await fileOnDisk(3, 'manifest.json'));
    await unlink(await fileOnDisk(2, 'optimizer.safetensors'));
    await truncate(await fileOnDisk(1, 'model.safetensors'), 10);
    const reasons = (await listCheckpoints(store, 'run-1')).map((c) => c.reason);
    expect(reasons[2]).toBe('missing manifest');
    expect(reasons[1]).toBe('missing file optimizer.safetensors');
    expect(reasons[0]).toBe('size mismatch for model.safetensors: 10 bytes, manifest says 4097');
    expect(await latestCheckpoint(store, 'run-1')).toBeUndefined();
    await expect(loadCheckpoint(store, 'run-1', 2)).rejects.toThrow(/missing file optimizer\.safetensors/);
    await expect(loadCheckpoint(store, 'run-1', 3)).rejects.toThrow(/missing manifest/);

    await commitCheckpoint(store, 'run-1', 5, files(5), { step: 5 });
    await writeFile(await fileOnDisk(5, 'manifest.json'), '{"formatVersion": 1, "files": {');
    const five = (await listCheckpoints(store, 'run-1')).find((c) => c.step === 5);
    expect(five?.reason).toMatch(/^unreadable manifest JSON/);
  });

  it('rejects a manifest copied from another step or run', async () => {
    await writeFile(await fileOnDisk(3, 'manifest.json'), await readFile(await fileOnDisk(2, 'manifest.json')));
    expect((await listCheckpoints(store, 'run-1'))[2]!.reason).toMatch(/manifest step 2 does not match folder step 3/);
    expect((await latestCheckpoint(store, 'run-1'))?.step).toBe(2);
  });

  it('a damaged state.json is caught by its sha256 like any other file', async () => {
    await writeFile(await fileOnDisk(3, 'state.json'), '{"step": 4}\n   ');
    const three = (await listCheckpoints(store, 'run-1'))[2]!;
    expect(three.valid).toBe(false);
    expect(three.reason).toMatch(/state\.json/);
  });
});

describe('isManifestKey', () => {
  it('tells the manifests of a step (every generation) from its other files and from other steps', () => {
    expect(isManifestKey('run-1/checkpoints/00000009/manifest.json', 9)).toBe(true);
    expect(isManifestKey('prefix/run-1/checkpoints/00000009/manifest.2.json', 9)).toBe(true);
    expect(isManifestKey('run-1/checkpoints/00000009/objects/ab', 9)).toBe(false);
    expect(isManifestKey('run-1/checkpoints/00000008/manifest.json', 9)).toBe(false);
    expect(isManifestKey('run-1/checkpoints/00000009/manifest.0.json', 9)).toBe(false);
  });
});

describe('replacing an invalid step, older layouts, other filesystems', () => {
  it('a step whose checkpoint went bad is replaced by a manifest of the next generation, and its garbage removed', async () => {
    await commitCheckpoint(store, 'run-1', 5, files(5), { s: 5 });
    const path = await fileOnDisk(5, 'model.safetensors');
    await truncate(path, 10);
    expect((await listCheckpoints(store, 'run-1'))[0]).toMatchObject({ step: 5, valid: false });
    const ref = await commitCheckpoint(store, 'run-1', 5, files(6), { s: 6 });
    expect(ref.manifestKey).toBe('run-1/checkpoints/00000005/manifest.1.json');
    expect((await loadCheckpoint(store, 'run-1', 5)).state).toEqual({ s: 6 });
    expect((await store.list(ref.prefix)).map((b) => b.key.slice(ref.prefix.length))).toEqual(['manifest.1.json', ...Object.values(ref.files).map((e) => e.object!)].sort());
    // The new generation is the checkpoint now: different content is refused, the same is a no-op.
    await expect(commitCheckpoint(store, 'run-1', 5, files(7), { s: 7 })).rejects.toThrow(/already committed with different content/);
    expect((await commitCheckpoint(store, 'run-1', 5, files(6), { s: 6 })).manifestKey).toBe(ref.manifestKey);
  });

  it('loads a checkpoint in the layout before content-addressed objects (files under their own names)', async () => {
    const f = files(8);
    const state = new TextEncoder().encode('{"legacy": true}\n');
    const prefix = checkpointPrefix('run-1', 8);
    const all: Record<string, Uint8Array> = { ...f, 'state.json': state };
    for (const [name, data] of Object.entries(all)) await store.put(prefix + name, data);
    const manifest = { formatVersion: 1, runId: 'run-1', step: 8, createdAt: new Date().toISOString(), files: Object.fromEntries(Object.entries(all).map(([n, d]) => [n, { sha256: sha256(d), bytes: d.byteLength }])) };
    await store.put(`${prefix}manifest.json`, new TextEncoder().encode(JSON.stringify(manifest)));
    expect((await listCheckpoints(store, 'run-1'))[0]).toMatchObject({ step: 8, valid: true });
    const loaded = await loadCheckpoint(store, 'run-1', 8);
    expect(loaded.state).toEqual({ legacy: true });
    expect(sha256(loaded.files['model.safetensors']!)).toBe(sha256(f['model.safetensors']!));
  });

  it('commits into a run folder on another filesystem (a symlink to tmpfs): temporaries are staged next to their destination', async () => {
    const elsewhere = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'dro-other-fs-'));
    roots.push(elsewhere);
    await symlink(elsewhere, join(store.root, 'run-2'));
    await commitCheckpoint(store, 'run-2', 1, files(1), { s: 1 });
    expect((await listCheckpoints(store, 'run-2'))[0]).toMatchObject({ step: 1, valid: true });
    expect((await loadCheckpoint(store, 'run-2', 1)).state).toEqual({ s: 1 });
  });
});

describe('applyRetention', () => {
  it('keeps the last N and every K-th, deletes the rest below the newest valid step', async () => {
    for (let step = 1; step <= 10; step++) await commitCheckpoint(store, 'run-1', step, files(step), { step });
    const result = await applyRetention(store, 'run-1', { keepLast: 2, keepEvery: 4 });
    expect(result.deleted).toEqual([1, 2, 3, 5, 6, 7]);
    expect((await listCheckpoints(store, 'run-1')).map((c) => c.step)).toEqual([4, 8, 9, 10]);
    expect((await listCheckpoints(store, 'run-1')).every((c) => c.valid)).toBe(true);
  });

  it('keeps protected steps whatever the rest of the policy says', async () => {
    for (let step = 0; step <= 5; step++) await commitCheckpoint(store, 'run-1', step, files(step), { step });
    const result = await applyRetention(store, 'run-1', { keepLast: 2, protect: [0] });
    expect(result.deleted).toEqual([1, 2, 3]);
    expect((await listCheckpoints(store, 'run-1')).map((c) => c.step)).toEqual([0, 4, 5]);
  });

  it('never deletes the newest valid checkpoint, even when newer ones are damaged', async () => {
    for (let step = 1; step <= 4; step++) await commitCheckpoint(store, 'run-1', step, files(step), { step });
    await unlink(await fileOnDisk(4, 'model.safetensors'));
    await store.put('run-1/checkpoints/00000005/model.safetensors', patternBytes(5, 5)); // a commit in progress
    const result = await applyRetention(store, 'run-1', { keepLast: 1 });
    expect(result.deleted).toEqual([1, 2]);
    expect((await latestCheckpoint(store, 'run-1'))?.step).toBe(3);
    expect((await listCheckpoints(store, 'run-1')).map((c) => c.step)).toEqual([3, 4, 5]);
  });

  it('deletes nothing when there is no valid checkpoint, and validates the policy', async () => {
    await store.put('run-1/checkpoints/00000001/model.safetensors', patternBytes(5, 5));
    expect(await applyRetention(store, 'run-1', { keepLast: 1 })).toEqual({ kept: [1], deleted: [] });
    await expect(applyRetention(store, 'run-1', { keepLast: 0 })).rejects.toThrow(/keepLast/);
    await expect(applyRetention(store, 'run-1', { keepLast: 1, keepEvery: -2 })).rejects.toThrow(/keepEvery/);
  });
});
