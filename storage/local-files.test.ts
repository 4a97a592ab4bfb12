// makeDirectories against the real filesystem: it makes every missing level, ends with the kernel's own
// reason where Node's recursive mkdir loops (/proc) or misreports (a read-only filesystem as ENOENT).
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeUtf8File, folderError, makeDirectories, makeDirectoriesSync, readJsonFile } from './local-files.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dro-folders-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeDirectories', () => {
  it('makes every missing level, and is a no-op on an existing folder', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    await makeDirectories(deep);
    expect((await stat(deep)).isDirectory()).toBe(true);
    await makeDirectories(deep);
    makeDirectoriesSync(join(dir, 'a', 'sync', 'd'), 0o700);
    expect((await stat(join(dir, 'a', 'sync'))).mode & 0o777).toBe(0o700);
  });

  it('many concurrent callers making overlapping paths all succeed', async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => makeDirectories(join(dir, 'shared', 'x', String(i % 4), 'y'))));
    for (let i = 0; i < 4; i++) expect((await stat(join(dir, 'shared', 'x', String(i), 'y'))).isDirectory()).toBe(true);
  });

  it('ends with a clear error where the filesystem refuses new folders (/proc), where Node loops forever', async () => {
    // Node 20's mkdir({ recursive: true }) never returns here.
    await expect(makeDirectories('/proc/dro-no-such/x')).rejects.toThrow('cannot create folder /proc/dro-no-such/x: this filesystem does not allow new folders there (ENOENT)');
    expect(() => makeDirectoriesSync('/proc/dro-no-such')).toThrow('cannot create folder /proc/dro-no-such: this filesystem does not allow new folders there (ENOENT)');
  });

  it('names a file in the way, as the target or as a parent', async () => {
    await writeFile(join(dir, 'file'), 'x');
    await expect(makeDirectories(join(dir, 'file'))).rejects.toThrow(`cannot create folder ${join(dir, 'file')}: a file of that name is in the way (EEXIST)`);
    await expect(makeDirectories(join(dir, 'file', 'sub'))).rejects.toThrow(`cannot create folder ${join(dir, 'file', 'sub')}: a part of the path is a file, not a folder (ENOTDIR)`);
    expect(() => makeDirectoriesSync(join(dir, 'file', 'sub'))).toThrow('(ENOTDIR)');
  });

  it('says "read-only" for EROFS (Node reports it as ENOENT) and keeps the errno code', () => {
    const err = folderError('/mnt/x', Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }));
    expect(err.message).toBe('cannot create folder /mnt/x: the filesystem is read-only (EROFS)');
    expect((err as { code?: string }).code).toBe('EROFS');
  });
});

describe('readJsonFile', () => {
  it('skips a byte-order mark, and only at the start', async () => {
    const file = join(dir, 'bom.json');
    await writeFile(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a": 1}')]));
    expect(await readJsonFile(file)).toEqual({ a: 1 });
    await writeFile(file, Buffer.from('{"a": "\ufeff"}'));
    expect(await readJsonFile(file)).toEqual({ a: '\ufeff' });
  });

  it('names the line of the first bad UTF-8 byte, and the line and column of a JSON error', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, Buffer.concat([Buffer.from('[\n1,\n2,\n"'), Buffer.from([0xc3, 0x28]), Buffer.from('"]\n')]));
    await expect(readJsonFile(file)).rejects.toThrow(`${file}: line 4 is not valid UTF-8 text`);
    await writeFile(file, '[\n  1,\n  2 3]');
    await expect(readJsonFile(file)).rejects.toThrow(`${file} is not valid JSON: Expected ',' or ']' after array element at line 3, column 5`);
    expect(decodeUtf8File(Buffer.from('x\ny'), 'f')).toBe('x\ny');
  });
});
