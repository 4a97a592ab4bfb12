// The blob store contract on a local directory, plus what only a directory store can show.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, symlink, utimes, writeFile, mkdir } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeBlobStore, patternBytes } from '../test/blob-store-suite.js';
import { TEMP_PREFIX } from './blob-store.js';
import { DirectoryBlobStore, STALE_TEMPORARY_MS } from './dir-store.js';

/** The host part of a temporary's name, as the store writes it. */
const hostTag = (): string => createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
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
  it('stages writes next to their destination and leaves no temporary once they finish', async () => {
    const store = ctx.store as DirectoryBlobStore;
    await store.put('tmpcheck/a', patternBytes(100, 1));
    await store.putIfAbsent('tmpcheck/b', patternBytes(100, 2));
    expect((await readdir(join(store.root, 'tmpcheck'))).sort()).toEqual(['a', 'b']);
    expect(existsSync(join(store.root, '.partial'))).toBe(false);
  });

  it("sweeps a dead writer's temporaries when their folder is listed, never a live writer's", async () => {
    const store = ctx.store as DirectoryBlobStore;
    await store.put('sweep/x', patternBytes(10, 1));
    const dir = join(store.root, 'sweep');
    // A writer that died (a child process that has exited), one that lives (this process), one from long ago.
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const host = hostTag();
    const dead = join(dir, `${TEMP_PREFIX}${child.stdout}.${host}.0123456789abcdef`);
    const live = join(dir, `${TEMP_PREFIX}${process.pid}.${host}.fedcba9876543210`);
    const otherHost = join(dir, `${TEMP_PREFIX}1.00000000.aaaaaaaaaaaaaaaa`);
    const old = join(dir, `${TEMP_PREFIX}1.00000000.bbbbbbbbbbbbbbbb`);
    for (const f of [dead, live, otherHost, old]) await writeFile(f, 'half');
    const longAgo = new Date(Date.now() - STALE_TEMPORARY_MS - 60_000);
    await utimes(old, longAgo, longAgo);
    await mkdir(join(store.root, '.partial'), { recursive: true });
    const legacy = join(store.root, '.partial', 'deadbeef.tmp');
    await writeFile(legacy, 'half');
    await utimes(legacy, longAgo, longAgo);
    // Never listed as objects; the dead writer's and the old ones are gone after the listing.
    expect((await store.list('')).map((b) => b.key).filter((k) => k.includes('partial') || k.endsWith('.tmp'))).toEqual([]);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(legacy)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(otherHost)).toBe(true); // another machine's writer may be alive: only age decides
  });

  it('a root that is a regular file is an error, not an empty store', async () => {
    const file = join(await freshRoot(), 'not-a-dir');
    await writeFile(file, 'x');
    const store = new DirectoryBlobStore(file);
    await expect(store.list('run/')).rejects.toThrow(`store root ${file} is not a directory`);
    await expect(store.put('run/a', patternBytes(1, 1))).rejects.toThrow(/is not a directory/);
  });

  it('lists objects in a symlinked folder (a step moved to another disk)', async () => {
    const store = ctx.store as DirectoryBlobStore;
    const elsewhere = await freshRoot();
    await mkdir(join(store.root, 'linked'), { recursive: true });
    await symlink(elsewhere, join(store.root, 'linked', 'step'));
    await store.put('linked/step/model', patternBytes(5, 1));
    expect(await store.list('linked/')).toEqual([{ key: 'linked/step/model', bytes: 5 }]);
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
