// The GGUF reader: dequantisation of each supported type against hand-built blocks with known values,
// the header (every metadata type, tensor table, alignment) through the writer, reading from a file
// whose header is larger than the first read, and the refusals (wrong magic, truncation, unsupported
// and unknown types), each naming what is wrong.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeGgufHeader, dequantize, encodeGguf, GgufError, GgufReader, type GgufTensorToWrite, type TypedValue } from './gguf.js';

const f16 = { half: 0x3800, quarter: 0x3400, one: 0x3c00, minusOne: 0xbc00, two: 0x4000, tiny: 0x0001 /* 2^-24 */ };

/** A block: a list of uint16 halves (little-endian) then raw bytes. */
function block(halves: number[], rest: number[]): number[] {
  return [...halves.flatMap((h) => [h & 0xff, h >> 8]), ...rest];
}

describe('dequantisation of hand-built blocks', () => {
  it('F32, F16 (with a subnormal and infinities) and BF16', () => {
    const f32 = new Uint8Array(new Float32Array([1.5, -2.25, 3e-39]).buffer);
    expect(Array.from(dequantize('F32', f32, 3, 't'))).toEqual([1.5, -2.25, Math.fround(3e-39)]);
    const half = Uint8Array.from(block([f16.half, f16.minusOne, f16.tiny, 0x7c00, 0xfc00], []));
    expect(Array.from(dequantize('F16', half, 5, 't'))).toEqual([0.5, -1, 2 ** -24, Infinity, -Infinity]);
    // bfloat16 is the top half of a float32: 0x3fc0 → 1.5, 0xc010 → -2.25.
    expect(Array.from(dequantize('BF16', Uint8Array.from(block([0x3fc0, 0xc010], [])), 2, 't'))).toEqual([1.5, -2.25]);
  });

  it('Q8_0: x = d · q for 32 int8 values', () => {
    const qs = Array.from({ length: 32 }, (_, j) => j * 8 - 128); // -128, -120, …, 120
    const bytes = Uint8Array.from(block([f16.half], qs.map((q) => q & 0xff)));
    expect(Array.from(dequantize('Q8_0', bytes, 32, 't'))).toEqual(qs.map((q) => 0.5 * q));
  });

  it('Q4_0: low nibbles are elements 0–15, high nibbles 16–31, x = d · (q − 8)', () => {
    // Byte j holds low nibble j % 16 and high nibble 15 − j % 16.
    const bytes = Uint8Array.from(block([f16.quarter], Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4))));
    const want = [...Array.from({ length: 16 }, (_, j) => 0.25 * (j - 8)), ...Array.from({ length: 16 }, (_, j) => 0.25 * (15 - j - 8))];
    expect(Array.from(dequantize('Q4_0', bytes, 32, 't'))).toEqual(want);
  });

  it('Q4_1: x = d · q + m, over two blocks with different scales', () => {
    const nibbles = Array.from({ length: 16 }, (_, j) => (j % 16) | ((j % 4) << 4));
    const bytes = Uint8Array.from([...block([f16.half, f16.minusOne], nibbles), ...block([f16.two, f16.one], nibbles)]);
    const values = (d: number, m: number): number[] => [...Array.from({ length: 16 }, (_, j) => d * j + m), ...Array.from({ length: 16 }, (_, j) => d * (j % 4) + m)];
    expect(Array.from(dequantize('Q4_1', bytes, 64, 't'))).toEqual([...values(0.5, -1), ...values(2, 1)]);
  });

  it('refuses a byte count that does not fit the element count', () => {
    expect(() => dequantize('Q8_0', new Uint8Array(33), 32, 'tensor x')).toThrow(/tensor x: 33 bytes for 32 Q8_0 values \(expected 34\)/);
  });
});

const metadata: [string, TypedValue][] = [
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['llama.block_count', { type: 'u32', value: 2 }],
  ['llama.rope.freq_base', { type: 'f32', value: 10000 }],
  ['a.u8', { type: 'u8', value: 255 }],
  ['a.i8', { type: 'i8', value: -3 }],
  ['a.u16', { type: 'u16', value: 65535 }],
  ['a.i16', { type: 'i16', value: -300 }],
  ['a.i32', { type: 'i32', value: -70000 }],
  ['a.f64', { type: 'f64', value: 0.1 }],
  ['a.u64', { type: 'u64', value: 2n ** 60n }],
  ['a.i64', { type: 'i64', value: -5 }],
  ['a.bool', { type: 'bool', value: true }],
  ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: ['<s>', 'héllo', '日本'] }],
  ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', items: [3, 1, 1] }],
];
const q8 = Uint8Array.from(block([f16.one], Array.from({ length: 32 }, (_, j) => j)));
const tensors: GgufTensorToWrite[] = [
  { name: 'token_embd.weight', dims: [32, 2], typeId: 8, data: Uint8Array.from([...q8, ...q8]) },
  { name: 'output_norm.weight', dims: [3], typeId: 0, data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
];

describe('the header', () => {
  it('reads back every metadata type, the tensor table and the aligned offsets', () => {
    const h32 = decodeGgufHeader(encodeGguf(metadata, tensors));
    expect(h32.version).toBe(3);
    expect(h32.alignment).toBe(32);
    expect(h32.dataOffset % 32).toBe(0);
    expect(Object.fromEntries(h32.metadata)).toEqual({
      'general.architecture': 'llama', 'llama.block_count': 2, 'llama.rope.freq_base': 10000, 'a.u8': 255, 'a.i8': -3, 'a.u16': 65535,
      'a.i16': -300, 'a.i32': -70000, 'a.f64': 0.1, 'a.u64': 2n ** 60n, 'a.i64': -5, 'a.bool': true,
      'tokenizer.ggml.tokens': ['<s>', 'héllo', '日本'], 'tokenizer.ggml.token_type': [3, 1, 1],
    });
    expect(h32.tensors.map((t) => [t.name, t.dims, t.typeName, t.byteLength])).toEqual([
      ['token_embd.weight', [32, 2], 'Q8_0', 68],
      ['output_norm.weight', [3], 'F32', 12],
    ]);
    expect(h32.tensors[1]!.offset - h32.dataOffset).toBe(96); // 68 bytes rounded up to the alignment 32
  });

  it('carries a file\'s metadata over byte for byte when its tensors are written in another type', () => {
    const bytes = encodeGguf(metadata, tensors);
    const h = decodeGgufHeader(bytes);
    const f32 = new Uint8Array(new Float32Array(64).fill(0.5).buffer);
    const copy = encodeGguf({ bytes: bytes.subarray(h.metadataSpan.start, h.metadataSpan.end), count: h.metadataSpan.count }, [{ ...tensors[0]!, typeId: 0, data: f32 }, tensors[1]!]);
    const hc = decodeGgufHeader(copy);
    expect(hc.metadata).toEqual(h.metadata);
    expect(hc.metadataSpan).toEqual(h.metadataSpan);
    expect(hc.tensors.map((t) => [t.name, t.typeName, t.byteLength])).toEqual([['token_embd.weight', 'F32', 256], ['output_norm.weight', 'F32', 12]]);
  });

  it('keeps a string\'s leading U+FEFF (a token is its bytes, not a text file with a byte-order mark)', () => {
    const h = decodeGgufHeader(encodeGguf([['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: ['\uFEFFa', 'b'] }]], []));
    expect(h.metadata.get('tokenizer.ggml.tokens')).toEqual(['\uFEFFa', 'b']);
  });

  it('honours general.alignment and refuses one that is not a power of two', () => {
    const h = decodeGgufHeader(encodeGguf([['general.alignment', { type: 'u32', value: 64 }]], tensors, 64));
    expect(h.alignment).toBe(64);
    expect(h.tensors[1]!.offset - h.dataOffset).toBe(128);
    expect(() => decodeGgufHeader(encodeGguf([['general.alignment', { type: 'u32', value: 48 }]], tensors, 48))).toThrow(/general.alignment is 48; it must be a power of two/);
  });

  it('refuses a wrong magic, another version and an unknown metadata type, naming them', () => {
    const good = encodeGguf(metadata, tensors);
    const bad = good.slice();
    bad.set([0x7b, 0x22], 0); // a JSON file, say
    expect(() => decodeGgufHeader(bad, 'x.gguf')).toThrow(/x.gguf: not a GGUF file \(it starts with 7b 22 55 46/);
    expect(() => decodeGgufHeader(new Uint8Array(0), 'empty.gguf')).toThrow(/empty.gguf: not a GGUF file \(it starts with nothing/);
    const v1 = good.slice();
    v1[4] = 1;
    expect(() => decodeGgufHeader(v1)).toThrow(/GGUF version 1; this reader knows versions 2 and 3/);
    const typeAt = 24 + 8 + 'general.architecture'.length; // magic, version, two counts, key length, key
    const badType = good.slice();
    badType[typeAt] = 13;
    expect(() => decodeGgufHeader(badType)).toThrow(/metadata general.architecture has value type 13, which GGUF does not define/);
  });

  it('says where a truncated file ends, in the header or in a tensor', () => {
    const good = encodeGguf(metadata, tensors);
    expect(() => decodeGgufHeader(good.subarray(0, 100), 'cut.gguf')).toThrow(/cut.gguf: truncated: the file ends at byte 100 inside/);
    // The writer pads the last tensor to the alignment, as llama.cpp's does: cut inside its data.
    const last = decodeGgufHeader(good).tensors[1]!;
    expect(() => decodeGgufHeader(good.subarray(0, last.offset + 4), 'cut.gguf')).toThrow(/cut.gguf: truncated: tensor output_norm.weight needs bytes \d+ to \d+, but the file ends at/);
  });

  it('keeps a tensor of a type it does not dequantise, and names type and tensor when it is read', async () => {
    const q6k: GgufTensorToWrite = { name: 'blk.0.ffn_down.weight', dims: [256], typeId: 14, data: new Uint8Array(210) };
    const unknown: GgufTensorToWrite = { name: 'blk.0.odd.weight', dims: [4], typeId: 99, data: new Uint8Array(16) };
    const path = join(dir, 'types.gguf');
    await writeFile(path, encodeGguf(metadata, [...tensors, q6k, unknown]));
    const r = await GgufReader.open(path);
    try {
      expect(r.header.tensors.map((t) => t.typeName)).toEqual(['Q8_0', 'F32', 'Q6_K', 'unknown type 99']);
      await expect(r.read('blk.0.ffn_down.weight')).rejects.toThrow(/tensor blk.0.ffn_down.weight has type Q6_K, which this importer does not dequantise \(it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1\)/);
      await expect(r.read('blk.0.odd.weight')).rejects.toThrow(/has type unknown type 99/);
      await expect(r.read('nope')).rejects.toThrow(/no tensor nope/);
    } finally {
      await r.close();
    }
  });
});

const dir = await mkdtemp(join(tmpdir(), 'gguf-test-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('reading a file', () => {
  it('reads a header larger than the first read, then each tensor from its offset', async () => {
    // 6 MB of vocabulary: more than the 4 MiB the reader reads first.
    const tokens = Array.from({ length: 60_000 }, (_, i) => `token-${i}-${'x'.repeat(90)}`);
    const path = join(dir, 'big-header.gguf');
    await writeFile(path, encodeGguf([['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: tokens }]], tensors));
    const r = await GgufReader.open(path);
    try {
      expect(r.header.dataOffset).toBeGreaterThan(4 << 20);
      expect((r.header.metadata.get('tokenizer.ggml.tokens') as string[])[59_999]).toBe(tokens[59_999]);
      expect(Array.from(await r.read('token_embd.weight'))).toEqual([...Array.from({ length: 32 }, (_, j) => j), ...Array.from({ length: 32 }, (_, j) => j)]);
      expect(Array.from(await r.read('output_norm.weight'))).toEqual([1, 2, 3]);
    } finally {
      await r.close();
    }
  });

  it('refuses a file cut inside its tensor data, and a file that is not GGUF, and closes it', async () => {
    const good = encodeGguf(metadata, tensors);
    const cut = join(dir, 'cut.gguf');
    await writeFile(cut, good.subarray(0, decodeGgufHeader(good).tensors[1]!.offset + 4));
    await expect(GgufReader.open(cut)).rejects.toThrow(GgufError);
    await expect(GgufReader.open(cut)).rejects.toThrow(/truncated: tensor output_norm.weight/);
    const json = join(dir, 'config.gguf');
    await writeFile(json, '{"not": "gguf"}');
    await expect(GgufReader.open(json)).rejects.toThrow(/config.gguf: not a GGUF file/);
  });
});
