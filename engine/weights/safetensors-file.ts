// Safetensors files of any size through a file handle: the header read from the file's start, each tensor
// read by its offset in pieces, and files written header first then tensor by tensor, so no step holds a
// whole file (over 2 GiB for large models) in one buffer. The byte format itself is safetensors.ts's.
import { open, type FileHandle } from 'node:fs/promises';
import { decodeSafetensorsHeader, safetensorsHeaderSize, safetensorsLayout, SafetensorsError, tensorFrom, toFloat32, type SafeTensor, type SafetensorsEntry, type SafetensorsHeader } from './safetensors.js';

/** One read or write call moves at most this much: Node refuses more than 2 GiB − 1 per call. */
export const DEFAULT_PIECE_BYTES = 256 * 1024 * 1024;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface PieceOptions {
  /** Bytes per read or write call; tests lower it to exercise the piecing on small files. */
  pieceBytes?: number;
}

function pieceSize(options: PieceOptions): number {
  const piece = options.pieceBytes ?? DEFAULT_PIECE_BYTES;
  if (!Number.isSafeInteger(piece) || piece < 1 || piece > 0x7fff_f000) throw new RangeError(`pieceBytes must be an integer in [1, 2147479552], got ${piece}`);
  return piece;
}

async function readFully(handle: FileHandle, target: Uint8Array, position: number, piece: number, what: string): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const { bytesRead } = await handle.read(target, done, Math.min(piece, target.length - done), position + done);
    // The header was checked against the file's length at open: a short read means the file shrank since.
    if (bytesRead === 0) throw new SafetensorsError(`${what}: the file ended at byte ${position + done}, ${target.length - done} bytes short`);
    done += bytesRead;
  }
}

export class SafetensorsFileReader {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly header: SafetensorsHeader,
    private readonly piece: number,
  ) {}

  /** Opens `path` and parses its header (reading only the header's bytes); errors name the file. */
  static async open(path: string, options: PieceOptions = {}): Promise<SafetensorsFileReader> {
    const piece = pieceSize(options);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw new SafetensorsError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const { size } = await handle.stat();
      const first = new Uint8Array(Math.min(8, size));
      await readFully(handle, first, 0, piece, path);
      const prefix = new Uint8Array(safetensorsHeaderSize(first, size, path));
      await readFully(handle, prefix, 0, piece, path);
      return new SafetensorsFileReader(path, handle, decodeSafetensorsHeader(prefix, size, path), piece);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.header.entries.get(name);
    if (!e) throw new SafetensorsError(`${this.path}: no tensor ${JSON.stringify(name)}`);
    return e;
  }

  /** The tensor's raw bytes, a fresh buffer of exactly its size. */
  async read(name: string): Promise<SafeTensor> {
    const e = this.entry(name);
    const data = new Uint8Array(e.end - e.begin);
    await readFully(this.handle, data, this.header.dataStart + e.begin, this.piece, `${this.path}: tensor ${name}`);
    return { dtype: e.dtype, shape: [...e.shape], data };
  }

  /**
   * The tensor's values as float32 (F64 and integers rounded as toFloat32 does). F32 is read straight into
   * the result, so loading a float32 model needs no second copy; other dtypes hold one tensor's raw bytes
   * while converting.
   */
  async readFloat32(name: string): Promise<Float32Array> {
    const e = this.entry(name);
    if (e.dtype === 'F32' && HOST_IS_LITTLE_ENDIAN) {
      const out = new Float32Array((e.end - e.begin) / 4);
      await readFully(this.handle, new Uint8Array(out.buffer), this.header.dataStart + e.begin, this.piece, `${this.path}: tensor ${name}`);
      return out;
    }
    return toFloat32(await this.read(name));
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Writes exactly encodeSafetensors(tensors, metadata)'s bytes to `path` (created or truncated), header first
 * and then each tensor's data in pieces, never assembling the file in memory. The caller owns atomicity
 * (write to a temporary name, then rename).
 */
export async function writeSafetensorsFile(path: string, tensors: Map<string, SafeTensor>, metadata: Record<string, string> = {}, options: PieceOptions = {}): Promise<number> {
  const piece = pieceSize(options);
  const { header, order, dataLength } = safetensorsLayout(tensors, metadata);
  const handle = await open(path, 'w');
  try {
    let position = 0;
    const write = async (bytes: Uint8Array): Promise<void> => {
      for (let done = 0; done < bytes.length; ) {
        const { bytesWritten } = await handle.write(bytes, done, Math.min(piece, bytes.length - done), position);
        done += bytesWritten;
        position += bytesWritten;
      }
    };
    await write(header);
    for (const [, tensor] of order) await write(tensor.data);
    await handle.sync();
    return header.length + dataLength;
  } finally {
    await handle.close();
  }
}

/** A float32 tensor whose data is a view of `values` (no copy on little-endian hosts), for writing. */
export function float32Tensor(values: Float32Array, shape: number[]): SafeTensor {
  if (!HOST_IS_LITTLE_ENDIAN) return tensorFrom(values, shape);
  return { dtype: 'F32', shape: [...shape], data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}
