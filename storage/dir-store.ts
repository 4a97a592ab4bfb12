// Blob store on a local directory: each object is a file; writes go to a temporary file next to their
// destination (so a folder on another filesystem works), are fsynced, then renamed into place, so no
// reader ever sees half an object. putIfAbsent links instead of renaming: the filesystem lets exactly
// one writer create the name. Temporaries a dead writer left behind are removed when their folder is listed.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import {
  BlobNotFoundError,
  RESERVED_TOP_SEGMENT,
  TEMP_PREFIX,
  validateKey,
  validatePrefix,
  type BlobInfo,
  type BlobSource,
  type BlobStore,
  type OpOptions,
} from './blob-store.js';
import { isErrno, makeDirectories } from './local-files.js';

const HOST = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
/** A temporary untouched this long is no live writer's: writing a file keeps its mtime fresh. */
export const STALE_TEMPORARY_MS = 60 * 60 * 1000;

/** `.dro-partial.<pid>.<host>.<random>`: who writes it, so a sweep can tell a dead writer's file at once. */
const temporaryName = (): string => `${TEMP_PREFIX}${process.pid}.${HOST}.${randomBytes(8).toString('hex')}`;

/** Whether a temporary (or a file in the legacy .partial/ folder) belongs to no live writer. */
async function isStaleTemporary(path: string, name: string): Promise<boolean> {
  const [pid, host] = name.startsWith(TEMP_PREFIX) ? name.slice(TEMP_PREFIX.length).split('.') : [];
  if (host === HOST && Number(pid) !== process.pid && !pidAlive(Number(pid))) return true;
  try {
    return Date.now() - (await stat(path)).mtimeMs > STALE_TEMPORARY_MS;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

export class DirectoryBlobStore implements BlobStore {
  readonly location: string;
  private rootChecked: Promise<void> | undefined;

  constructor(readonly root: string) {
    this.location = root;
  }

  /** A root that exists but is not a folder (a mistyped path) is an error, never an empty store. */
  private checkRoot(): Promise<void> {
    this.rootChecked ??= stat(this.root).then(
      (s) => {
        if (!s.isDirectory()) throw new Error(`store root ${this.root} is not a directory`);
      },
      (err: unknown) => {
        if (!isErrno(err, 'ENOENT')) throw err;
        // Not there yet: the first write creates it; check again then.
        this.rootChecked = undefined;
      },
    );
    return this.rootChecked;
  }

  private pathOf(key: string): string {
    validateKey(key);
    const full = join(this.root, ...key.split('/'));
    // validateKey already forbids '..'; this is the belt to its braces.
    const rel = relative(this.root, full);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw new Error(`key ${JSON.stringify(key)} resolves outside ${this.root}`);
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

  async putIfAbsent(key: string, data: Uint8Array, opts: OpOptions = {}): Promise<boolean> {
    let created = false;
    await this.writeAtomically(
      key,
      opts,
      async (handle) => {
        await handle.write(data, 0, data.byteLength);
        return data.byteLength;
      },
      async (temp, target) => {
        try {
          // link() fails when the name exists: of concurrent writers exactly one creates it.
          await link(temp, target);
          created = true;
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
        }
        await unlink(temp);
      },
    );
    return created;
  }

  private async writeAtomically(
    key: string,
    opts: OpOptions,
    write: (handle: FileHandle) => Promise<number>,
    publish: (temp: string, target: string) => Promise<void> = (temp, target) => rename(temp, target),
  ): Promise<number> {
    const target = this.pathOf(key);
    opts.signal?.throwIfAborted();
    await this.checkRoot();
    const { temp, handle } = await this.openTemporary(dirname(target));
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
      await publish(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    return bytes;
  }

  /** A new temporary in `dir` (made if needed). Once it exists the folder is not empty, so a concurrent delete's cleanup keeps it. */
  private async openTemporary(dir: string): Promise<{ temp: string; handle: FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      await makeDirectories(dir);
      const temp = join(dir, temporaryName());
      try {
        return { temp, handle: await open(temp, 'wx') };
      } catch (err) {
        // The folder, empty a moment ago, was removed by a concurrent delete: make it again.
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
    await this.checkRoot();
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
        if (key === RESERVED_TOP_SEGMENT) {
          await this.sweep((await readdir(full).catch(() => [] as string[])).map((n) => join(full, n)));
          continue;
        }
        if (entry.name.startsWith(TEMP_PREFIX)) {
          await this.sweep([full]);
          continue;
        }
        // A symlinked folder (a step moved to another disk) is listed like any folder.
        const isDir = entry.isDirectory() || (entry.isSymbolicLink() && (await stat(full).catch(() => undefined))?.isDirectory() === true);
        if (isDir) {
          // Descend into folders that lie on the way to the prefix or inside it.
          if (prefix.startsWith(key + '/') || (key + '/').startsWith(prefix)) await walk(full);
        } else if ((entry.isFile() || entry.isSymbolicLink()) && key.startsWith(prefix)) {
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

  /** Removes the temporaries among `paths` that no live writer owns (a crashed write's leftovers). */
  private async sweep(paths: string[]): Promise<void> {
    for (const path of paths) {
      const name = path.slice(path.lastIndexOf(sep) + 1);
      if (await isStaleTemporary(path, name)) await unlink(path).catch(() => undefined);
    }
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
