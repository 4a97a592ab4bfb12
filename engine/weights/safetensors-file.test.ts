// Safetensors through a file handle: streamed writes equal encodeSafetensors' bytes, tensors read by offset
// in (injected, tiny) pieces equal the in-memory decoder's, and a sparse file over 2 GiB has its last tensor
// read from past the 2 GiB mark without the process holding the file in memory.
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors, tensorFrom, toFloat32, type SafeTensor } from './safetensors.js';
import { float32Tensor, SafetensorsFileReader, writeSafetensorsFile } from './safetensors-file.js';

const dirs: string[] = [];
const tempDir = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'st-file-'));
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const values = (n: number, k: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * (i + 1));
const mixed = (): Map<string, SafeTensor> =>
  new Map([
    ['w.f32', tensorFrom(values(37, 1), [37])],
    ['w.f16', tensorFrom(values(12, 2), [3, 4], 'F16')],
    ['w.bf16', tensorFrom(values(10, 3), [2, 5], 'BF16')],
    ['w.f64', tensorFrom(Float64Array.from(values(5, 4)), [5])],
    ['empty', tensorFrom(new Float32Array(0), [0, 3])],
  ]);

describe('writeSafetensorsFile', () => {
  it('writes exactly encodeSafetensors bytes, whatever the piece size', async () => {
    const dir = await tempDir();
    const expected = encodeSafetensors(mixed(), { format: 'pt' });
    for (const pieceBytes of [1, 7, 4096, undefined]) {
      const path = join(dir, `p${pieceBytes}.safetensors`);
      const size = await writeSafetensorsFile(path, mixed(), { format: 'pt' }, pieceBytes === undefined ? {} : { pieceBytes });
      expect(size).toBe(expected.length);
      expect(Buffer.compare(await readFile(path), Buffer.from(expected))).toBe(0);
    }
  });

  it('float32Tensor views the array without copying it', () => {
    const v = values(8, 0);
    const t = float32Tensor(v, [2, 4]);
    expect(t.data.buffer).toBe(v.buffer);
    expect(toFloat32(t)).toEqual(v);
  });
});

describe('SafetensorsFileReader', () => {
  it('reads every tensor by offset, in pieces of 3 bytes, as the in-memory decoder does', async () => {
    const dir = await tempDir();
    const bytes = encodeSafetensors(mixed(), { format: 'pt' });
    const path = join(dir, 'm.safetensors');
    await writeFile(path, bytes);
    const memory = decodeSafetensors(bytes, path);
    const reader = await SafetensorsFileReader.open(path, { pieceBytes: 3 });
    try {
      expect(reader.header.metadata).toEqual({ format: 'pt' });
      expect([...reader.header.entries.keys()]).toEqual([...memory.tensors.keys()]);
      for (const [name, t] of memory.tensors) {
        const read = await reader.read(name);
        expect(read.dtype).toBe(t.dtype);
        expect(read.shape).toEqual(t.shape);
        expect(Buffer.compare(Buffer.from(read.data), Buffer.from(t.data))).toBe(0);
        expect(await reader.readFloat32(name)).toEqual(toFloat32(t));
      }
    } finally {
      await reader.close();
    }
  });

  it('names the file when it is missing, corrupt, or shrinks after opening', async () => {
    const dir = await tempDir();
    await expect(SafetensorsFileReader.open(join(dir, 'none.safetensors'))).rejects.toThrow(/cannot read .*none\.safetensors/);
    const short = join(dir, 'short.safetensors');
    await writeFile(short, new Uint8Array([1, 2, 3]));
    await expect(SafetensorsFileReader.open(short)).rejects.toThrow(/short\.safetensors: file is 3 bytes/);
    const path = join(dir, 'shrinks.safetensors');
    await writeFile(path, encodeSafetensors(mixed()));
    const reader = await SafetensorsFileReader.open(path);
    try {
      const h = await open(path, 'r+');
      await h.truncate(reader.header.dataStart + 4);
      await h.close();
      await expect(reader.read('w.f32')).rejects.toThrow(/shrinks\.safetensors: tensor w\.f32: the file ended at byte/);
    } finally {
      await reader.close();
    }
  });

  // A sparse file (ftruncate) is 2 GiB + a little on paper but takes no disk or time to write: its header
  // describes a zero-filled 2 GiB U8 tensor and then a small F32 tensor whose bytes are written past the
  // 2 GiB mark. Reading that tail proves offsets beyond 2^31 and that no whole-file buffer is made.
  it('reads a tensor stored past 2 GiB of a sparse file, holding only that tensor in memory', async () => {
    const dir = await tempDir();
    const path = join(dir, 'sparse.safetensors');
    const big = 2 ** 31 + 8;
    const tail = values(6, 9);
    const json = JSON.stringify({ big: { dtype: 'U8', shape: [big], data_offsets: [0, big] }, tail: { dtype: 'F32', shape: [6], data_offsets: [big, big + 24] } });
    const padded = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
    const header = new Uint8Array(8 + padded.length);
    new DataView(header.buffer).setBigUint64(0, BigInt(padded.length), true);
    header.set(new TextEncoder().encode(padded), 8);
    const h = await open(path, 'w');
    await h.write(header, 0, header.length, 0);
    await h.write(new Uint8Array(tail.buffer), 0, 24, header.length + big);
    await h.close();

    const before = process.memoryUsage().arrayBuffers;
    const reader = await SafetensorsFileReader.open(path);
    try {
      expect(reader.header.dataStart + big + 24).toBeGreaterThan(2 ** 31);
      expect(await reader.readFloat32('tail')).toEqual(tail);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    } finally {
      await reader.close();
    }
  });
});
