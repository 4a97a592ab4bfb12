// The blob store contract on a local directory, plus what only a directory store can show.
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeBlobStore, patternBytes } from '../test/blob-store-suite.js';
import { DirectoryBlobStore } from './dir-store.js';
import { openBlobStore } from './open.js';

const roots: string[] = [];
async function freshRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'dro-dir-store-'));
  roots.push(root);
  return root;
}
afterAll(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});

describeBlobStore('directory', async () => openBlobStore(await freshRoot()), (ctx) => {
  it('leaves no temporary files once writes finish, and lists none while they exist', async () => {
    const store = ctx.store as DirectoryBlobStore;
    await store.put('tmpcheck/a', patternBytes(100, 1));
    expect(await readdir(join(store.root, '.partial'))).toEqual([]);
    // A leftover from a killed writer: never listed, never readable as an object.
    await writeFile(join(store.root, '.partial', 'deadbeef.tmp'), 'half');
    expect((await store.list('')).some((b) => b.key.includes('.partial') || b.key.endsWith('.tmp'))).toBe(false);
  });

  it('removes folders that a delete leaves empty', async () => {
    const store = ctx.store as DirectoryBlobStore;
    await store.put('husk/deep/er/x', patternBytes(3, 2));
    await store.delete('husk/deep/er/x');
    expect((await readdir(store.root)).includes('husk')).toBe(false);
  });

  it('does not list a directory as an object, and get on a directory is not found', async () => {
    const store = ctx.store as DirectoryBlobStore;
    await mkdir(join(store.root, 'adir', 'sub'), { recursive: true });
    expect(await store.list('adir')).toEqual([]);
    await expect(store.get('adir/sub')).rejects.toThrow(/not found/);
    expect(await store.exists('adir/sub')).toBe(false);
  });
});

describe('openBlobStore', () => {
  it('opens file:// URLs and plain paths as directory stores at the same place', async () => {
    const root = await freshRoot();
    const viaUrl = await openBlobStore(pathToFileURL(root).href);
    const viaPath = await openBlobStore(root);
    expect(viaUrl).toBeInstanceOf(DirectoryBlobStore);
    await viaUrl.put('x', new Uint8Array([1, 2, 3]));
    expect(Array.from(await viaPath.get('x'))).toEqual([1, 2, 3]);
  });

  it('rejects unknown schemes and malformed S3 URIs, naming the URI', async () => {
    await expect(openBlobStore('gs://bucket/x')).rejects.toThrow(/unsupported blob store URI scheme "gs:" in gs:\/\/bucket\/x/);
    await expect(openBlobStore('s3://Bad_Bucket/x')).rejects.toThrow(/invalid S3 bucket name "Bad_Bucket"/);
    await expect(openBlobStore('s3://bucket/../x')).rejects.toThrow(/'\.\.'/);
    await expect(openBlobStore('')).rejects.toThrow(/empty/);
  });
});
