// Blob store on a local directory: each object is a file; writes go to a temporary file under
// `<root>/.partial/`, are fsynced, then renamed into place, so no reader ever sees half an object.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import {
  BlobNotFoundError,
  RESERVED_TOP_SEGMENT,
  validateKey,
  validatePrefix,
  type BlobInfo,
  type BlobSource,
  type BlobStore,
  type OpOptions,
} from './blob-store.js';

export class DirectoryBlobStore implements BlobStore {
  readonly location: string;

  constructor(readonly root: string) {
    this.location = root;
  }

  private pathOf(key: string): string {
    validateKey(key);
    const full = join(this.root, ...key.split('/'));
    // validateKey already forbids '..'; this is the belt to its braces.
    const rel = relative(this.root, full);
    if (rel.startsWith('..') || rel === '') throw new Error(`key ${JSON.stringify(key)} resolves outside ${this.root}`);
    return full;
  }

  async put(key: string, data: Uint8Array, opts: OpOptions = {}): Promise<void> {
    await this.writeAtomically(key, opts, async (handle) => {
      let offset = 0;
      // Chunked so a large write can be aborted between chunks.
      const chunk = 16 * 1024 * 1024;
      while (offset < data.byteLength) {
        opts.signal?.throwIfAborted();
        const { bytesWritten } = await handle.write(data, offset, Math.min(chunk, data.byteLength - offset));
        offset += bytesWritten;
      }
      return data.byteLength;
    });
  }

  async putStream(key: string, source: BlobSource, opts: OpOptions = {}): Promise<{ bytes: number }> {
    const bytes = await this.writeAtomically(key, opts, async (handle) => {
      let total = 0;
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        opts.signal?.throwIfAborted();
        let offset = 0;
        while (offset < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
          offset += bytesWritten;
        }
        total += chunk.byteLength;
      }
      return total;
    });
    return { bytes };
  }

  private async writeAtomically(
    key: string,
    opts: OpOptions,
    write: (handle: FileHandle) => Promise<number>,
  ): Promise<number> {
    const target = this.pathOf(key);
    opts.signal?.throwIfAborted();
    const partialDir = join(this.root, RESERVED_TOP_SEGMENT);
    await mkdir(partialDir, { recursive: true });
    const temp = join(partialDir, `${randomBytes(12).toString('hex')}.tmp`);
    const handle = await open(temp, 'wx');
    let bytes: number;
    try {
      try {
        bytes = await write(handle);
        // fsync before rename: after a crash the renamed file must hold its data, not zeros.
        await handle.sync();
      } finally {
        await handle.close();
      }
      opts.signal?.throwIfAborted();
      await this.renameIntoPlace(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    return bytes;
  }

  private async renameIntoPlace(temp: string, target: string): Promise<void> {
    // A concurrent delete may remove the (then empty) parent between mkdir and rename; try again.
    for (let attempt = 0; ; attempt++) {
      await mkdir(dirname(target), { recursive: true });
      try {
        await rename(temp, target);
        return;
      } catch (err) {
        if (!isErrno(err, 'ENOENT') || attempt >= 4) throw err;
      }
    }
  }

  async get(key: string, opts: OpOptions = {}): Promise<Uint8Array> {
    const path = this.pathOf(key);
    try {
      const buf = await readFile(path, { signal: opts.signal });
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'EISDIR')) throw new BlobNotFoundError(this.location, key);
      throw err;
    }
  }

  async getStream(key: string, opts: OpOptions = {}): Promise<Readable> {
    const path = this.pathOf(key);
    opts.signal?.throwIfAborted();
    // Open eagerly so a missing object is reported here, not as a later stream error.
    let handle;
    try {
      handle = await open(path, 'r');
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        throw new BlobNotFoundError(this.location, key);
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new BlobNotFoundError(this.location, key);
      throw err;
    }
    return createReadStream(path, { fd: handle, signal: opts.signal, highWaterMark: 1024 * 1024 });
  }

  async list(prefix: string, opts: OpOptions = {}): Promise<BlobInfo[]> {
    validatePrefix(prefix);
    // Walk only the deepest directory the prefix names, then filter by the full prefix.
    const slash = prefix.lastIndexOf('/');
    const baseKey = slash >= 0 ? prefix.slice(0, slash) : '';
    const baseDir = baseKey ? join(this.root, ...baseKey.split('/')) : this.root;
    const out: BlobInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      opts.signal?.throwIfAborted();
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
        throw err;
      }
      for (const entry of entries) {
        const full = join(dir, entry.name);
        const key = relative(this.root, full).split(sep).join('/');
        if (key === RESERVED_TOP_SEGMENT) continue;
        if (entry.isDirectory()) {
          // Descend into folders that lie on the way to the prefix or inside it.
          if (prefix.startsWith(key + '/') || (key + '/').startsWith(prefix)) await walk(full);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          try {
            out.push({ key, bytes: (await stat(full)).size });
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err; // deleted while listing
          }
        }
      }
    };
    await walk(baseDir);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string, opts: OpOptions = {}): Promise<void> {
    const path = this.pathOf(key);
    opts.signal?.throwIfAborted();
    try {
      await unlink(path);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    // Remove folders the delete left empty, so deleted checkpoints leave no husks; rmdir refuses
    // non-empty folders, which makes this safe against concurrent writers.
    let dir = dirname(path);
    while (dir !== this.root && dir.startsWith(this.root + sep)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
  }

  async exists(key: string, opts: OpOptions = {}): Promise<boolean> {
    const path = this.pathOf(key);
    opts.signal?.throwIfAborted();
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
      throw err;
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
