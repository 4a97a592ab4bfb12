// Safetensors encode/decode: round trips, exact bytes, interop with the official Python writer, half-precision
// conversion tables, and every validation error naming its source and field.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bfloat16BitsToFloat32,
  decodeSafetensors,
  dtypeItemSize,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  MAX_HEADER_BYTES,
  SafetensorsError,
  tensorFrom,
  toFloat32,
  toFloat64,
} from './safetensors.js';
import type { SafeTensor, SafetensorsDtype } from './safetensors.js';

const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

function headerOf(file: Uint8Array): { length: number; json: string; padded: string } {
  const length = Number(new DataView(file.buffer, file.byteOffset, file.byteLength).getBigUint64(0, true));
  const padded = new TextDecoder().decode(file.subarray(8, 8 + length));
  return { length, json: padded.trimEnd(), padded };
}

/** A file with a literal header text (not necessarily valid) and the given data bytes. */
function rawFile(header: string, data: number | number[] = 0): Uint8Array {
  const json = new TextEncoder().encode(header);
  const body = typeof data === 'number' ? new Uint8Array(data) : new Uint8Array(data);
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const SOURCE = 'model-00002-of-00004.safetensors';

function decodeError(bytes: Uint8Array, decode = (b: Uint8Array): unknown => decodeSafetensors(b, SOURCE)): string {
  try {
    decode(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(SafetensorsError);
    return (err as SafetensorsError).message;
  }
  throw new Error('expected the file to be rejected');
}

function expectDecodeError(bytes: Uint8Array, ...fragments: string[]): void {
  const message = decodeError(bytes);
  for (const f of [SOURCE, ...fragments]) expect(message).toContain(f);
}

function expectThrows(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

const same = (a: ArrayLike<number>, b: readonly number[]): void => {
  expect(a.length).toBe(b.length);
  // Object.is keeps -0 and NaN honest, which toEqual on typed arrays would not.
  Array.from(a).forEach((v, i) => expect(Object.is(v, b[i]), `index ${i}: ${v} vs ${b[i]}`).toBe(true));
};

describe('round trips', () => {
  const tensors = new Map<string, SafeTensor>([
    ['f64', tensorFrom(new Float64Array([1.5, -0, Infinity, Number.NaN, 1e308, 5e-324]), [2, 3])],
    ['f32', tensorFrom(new Float32Array([1.5, -0, 3.4028234663852886e38]), [3])],
    ['f16', tensorFrom(new Float32Array([1, -2, 65504, 2 ** -24]), [2, 2], 'F16')],
    ['bf16', tensorFrom(new Float32Array([1, -2, 3.140625]), [3], 'BF16')],
    ['i64', tensorFrom(new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n]), [3])],
    ['i32', tensorFrom(new Int32Array([-(2 ** 31), 2 ** 31 - 1]), [2])],
    ['i16', tensorFrom(new Int16Array([-32768, 32767, 1]), [3, 1])],
    ['i8', tensorFrom(new Int8Array([-128, 127]), [1, 2])],
    ['u8', tensorFrom(new Uint8Array([0, 255, 7]), [3])],
    ['bool', tensorFrom(new Uint8Array([1, 0, 1]), [3], 'BOOL')],
    ['scalar', tensorFrom(new Float32Array([7]), [])],
    ['empty', tensorFrom(new Float32Array(0), [0, 3])],
    ['empty.i64', tensorFrom(new BigInt64Array(0), [5, 0])],
  ]);

  it('every dtype, a 0-d scalar and zero-size tensors come back with the same dtype, shape and bytes', () => {
    const file = encodeSafetensors(tensors);
    const back = decodeSafetensors(file, 'roundtrip.safetensors');
    expect(new Set(back.tensors.keys())).toEqual(new Set(tensors.keys()));
    const dtypes = new Set([...back.tensors.values()].map((t) => t.dtype));
    expect(dtypes).toEqual(new Set<SafetensorsDtype>(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']));
    for (const [name, t] of tensors) {
      const b = back.tensors.get(name);
      expect(b, name).toBeDefined();
      expect(b?.dtype, name).toBe(t.dtype);
      expect(b?.shape, name).toEqual(t.shape);
      expect(Array.from(b?.data ?? []), name).toEqual(Array.from(t.data));
    }
    expect(back.metadata).toEqual({});
    expect(back.tensors.get('scalar')?.shape).toEqual([]);
    same(toFloat32(back.tensors.get('scalar')!), [7]);
    expect(back.tensors.get('empty')?.data.length).toBe(0);
  });

  it('values survive: floats exactly, halves as rounded, integers as numbers', () => {
    const back = decodeSafetensors(encodeSafetensors(tensors)).tensors;
    same(toFloat64(back.get('f64')!), [1.5, -0, Infinity, Number.NaN, 1e308, 5e-324]);
    same(toFloat32(back.get('f32')!), [1.5, -0, 3.4028234663852886e38]);
    same(toFloat32(back.get('f16')!), [1, -2, 65504, 2 ** -24]);
    same(toFloat64(back.get('bf16')!), [1, -2, 3.140625]);
    same(toFloat64(back.get('i64')!), [-(2 ** 63), 0, 2 ** 63]);
    expect(Array.from(new BigInt64Array(back.get('i64')!.data.slice().buffer))).toEqual([-(2n ** 63n), 0n, 2n ** 63n - 1n]);
    same(toFloat64(back.get('i32')!), [-(2 ** 31), 2 ** 31 - 1]);
    same(toFloat32(back.get('i16')!), [-32768, 32767, 1]);
    same(toFloat32(back.get('i8')!), [-128, 127]);
    same(toFloat64(back.get('u8')!), [0, 255, 7]);
    same(toFloat64(back.get('empty.i64')!), []);
  });

  it('metadata round trips (sorted by key, "__proto__" stays an ordinary key); empty metadata is left out', () => {
    const metadata = { format: 'pt', 'ünï ✓': 'välue 😀', ['__proto__']: 'not a prototype', empty: '' };
    const file = encodeSafetensors({ w: tensorFrom(new Float32Array([1]), [1]) }, metadata);
    const back = decodeSafetensors(file);
    expect(back.metadata).toEqual(metadata);
    expect(Object.hasOwn(back.metadata, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(back.metadata)).toBe(Object.prototype);
    expect(headerOf(file).json).toBe(
      '{"__metadata__":{"__proto__":"not a prototype","empty":"","format":"pt","ünï ✓":"välue 😀"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    );
    const bare = encodeSafetensors({ w: tensorFrom(new Float32Array([1]), [1]) });
    expect(headerOf(bare).json).not.toContain('__metadata__');
    expect(encodeSafetensors({ w: tensorFrom(new Float32Array([1]), [1]) }, {})).toEqual(bare);
  });

  it('the header is space-padded so the data buffer starts 8-byte aligned, and every tensor is aligned to its item size', () => {
    for (const names of [['a'], ['a', 'bb'], ['a', 'bb', 'ccc'], ['tensor.with.a.longer.name']]) {
      const file = encodeSafetensors(Object.fromEntries(names.map((n) => [n, tensorFrom(new Uint8Array([1]), [1])])));
      const { length, json, padded } = headerOf(file);
      expect((8 + length) % 8).toBe(0);
      expect(padded).toMatch(/^\{.*\} *$/);
      expect(padded.length - json.length).toBeLessThan(8);
      expect(() => JSON.parse(json) as unknown).not.toThrow();
    }
    // Odd-sized U8/BOOL/F16 tensors before an F32/I64 would misalign them; the writer's dtype order prevents it.
    const mixed = encodeSafetensors({
      a: tensorFrom(new Uint8Array([1, 2, 3]), [3]),
      b: tensorFrom(new Float32Array([1]), [1], 'F16'),
      c: tensorFrom(new Float32Array([1, 2, 3]), [3]),
      d: tensorFrom(new BigInt64Array([1n]), [1]),
      e: tensorFrom(new Uint8Array([1]), [1], 'BOOL'),
    });
    for (const [name, t] of decodeSafetensors(mixed).tensors) expect(t.data.byteOffset % dtypeItemSize(t.dtype), name).toBe(0);
  });

  it('is deterministic: Map or record, any insertion order, gives the same bytes', () => {
    const a = tensorFrom(new Float32Array([1, 2]), [2]);
    const b = tensorFrom(new Int8Array([3]), [1]);
    const one = encodeSafetensors(new Map([['x', a], ['y', b]]), { p: '1', q: '2' });
    const two = encodeSafetensors({ y: b, x: a }, { q: '2', p: '1' });
    expect(two).toEqual(one);
  });

  it('an empty file has just the padded "{}" header', () => {
    const file = encodeSafetensors({});
    expect(Array.from(file)).toEqual([8, 0, 0, 0, 0, 0, 0, 0, ...ascii('{}      ')]);
    const back = decodeSafetensors(file);
    expect(back.tensors.size).toBe(0);
    expect(back.metadata).toEqual({});
  });
});

describe('exact bytes of hand-built files', () => {
  it('metadata first, then tensors by dtype order (F32 before U8) and name, space padding, little-endian data', () => {
    const file = encodeSafetensors(
      { a: { dtype: 'U8', shape: [2], data: new Uint8Array([1, 2]) }, b: { dtype: 'F32', shape: [], data: new Uint8Array([0x00, 0x00, 0x80, 0x3f]) } },
      { k: 'v' },
    );
    const header = '{"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}';
    // 130 bytes of JSON + 6 spaces = 136 = 0x88, so the data starts at 8 + 136 = 144, a multiple of 8.
    const expected = [0x88, 0, 0, 0, 0, 0, 0, 0, ...ascii(header), ...ascii('      '), 0x00, 0x00, 0x80, 0x3f, 0x01, 0x02];
    expect(Array.from(file)).toEqual(expected);
    expect(file.length).toBe(150);
  });

  it('an I16 tensor from an Int16Array is written little-endian', () => {
    const file = encodeSafetensors({ x: tensorFrom(new Int16Array([-2, 258]), [2]) });
    // 54 bytes of JSON + 2 spaces = 56 = 0x38; -2 = 0xFFFE, 258 = 0x0102.
    const header = '{"x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}';
    expect(Array.from(file)).toEqual([0x38, 0, 0, 0, 0, 0, 0, 0, ...ascii(header), 0x20, 0x20, 0xfe, 0xff, 0x02, 0x01]);
  });
});

describe('interop with the official Python safetensors writer', () => {
  // Written by safetensors 0.8.0 (Python, numpy 2.4.6) with metadata {"format": "pt"}; the BF16 tensor was
  // passed as raw bits because numpy has no bfloat16. File order is the writer's: by dtype, then name.
  const fixture = new Uint8Array(readFileSync(join(import.meta.dirname, 'fixtures', 'reference.safetensors')));
  const expected: [string, SafetensorsDtype, number[]][] = [
    ['steps', 'I64', [4]],
    ['scalar', 'F64', []],
    ['empty', 'F32', [0, 3]],
    ['layer.weight', 'F32', [2, 3]],
    ['i32', 'I32', [2]],
    ['layer.bf16', 'BF16', [2, 3]],
    ['layer.half', 'F16', [6]],
    ['i16', 'I16', [2]],
    ['i8', 'I8', [2]],
    ['bytes', 'U8', [3]],
    ['tag.\uff21', 'U8', [1]],
    ['tag.\u{1f600}', 'U8', [1]],
    ['mask', 'BOOL', [3]],
  ];

  it('decodes the names, dtypes, shapes, values and metadata it wrote', () => {
    const file = decodeSafetensors(fixture, 'reference.safetensors');
    expect(file.metadata).toEqual({ format: 'pt' });
    expect([...file.tensors.entries()].map(([name, t]) => [name, t.dtype, t.shape])).toEqual(expected);
    const t = (name: string): SafeTensor => file.tensors.get(name)!;
    expect(Array.from(new BigInt64Array(t('steps').data.slice().buffer))).toEqual([-3n, 0n, 2n ** 53n + 1n, -(2n ** 63n)]);
    same(toFloat64(t('scalar')), [2.5]);
    same(toFloat32(t('empty')), []);
    same(toFloat32(t('layer.weight')), [1.5, -2.25, 0, 3, -0.125, 1024]);
    same(toFloat64(t('i32')), [-2147483648, 2147483647]);
    same(toFloat32(t('layer.bf16')), [1, -2, 3.140625, 2 ** -133, -Infinity, 0.10009765625]);
    same(toFloat32(t('layer.half')), [1, -2, 0.5, 65504, 2 ** -24, -0]);
    same(toFloat64(t('i16')), [-32768, 32767]);
    same(toFloat64(t('i8')), [-128, 127]);
    same(toFloat64(t('bytes')), [0, 127, 255]);
    same(toFloat64(t('tag.\uff21')), [1]);
    same(toFloat64(t('tag.\u{1f600}')), [2]);
    expect(Array.from(t('mask').data)).toEqual([1, 0, 1]);
    // Our own BF16 rounding agrees with the bits Python stored for 0.1.
    expect(float32ToBFloat16Bits(0.1)).toBe(0x3dcd);
  });

  it('our encoder writes the same tensors to the very same bytes, which decode identically', () => {
    const file = decodeSafetensors(fixture, 'reference.safetensors');
    const ours = encodeSafetensors(file.tensors, file.metadata);
    // Byte-identical, including the header's key order ("tag.Ａ" < "tag.😀" in UTF-8, unlike UTF-16) and padding.
    expect(Array.from(ours)).toEqual(Array.from(fixture));
    const again = decodeSafetensors(ours, 'ours.safetensors');
    expect(again.metadata).toEqual(file.metadata);
    expect([...again.tensors.keys()]).toEqual([...file.tensors.keys()]);
    for (const [name, t] of file.tensors) {
      const o = again.tensors.get(name)!;
      expect([o.dtype, o.shape, Array.from(o.data)], name).toEqual([t.dtype, t.shape, Array.from(t.data)]);
    }
  });

  it('tensor data are views into the given bytes, at any byte offset', () => {
    const shifted = new Uint8Array(fixture.length + 3);
    shifted.set(fixture, 1);
    const bytes = shifted.subarray(1, 1 + fixture.length);
    const t = decodeSafetensors(bytes).tensors.get('layer.weight')!;
    expect(t.data.buffer).toBe(shifted.buffer);
    expect(t.data.byteOffset % 4).toBe(1);
    same(toFloat32(t), [1.5, -2.25, 0, 3, -0.125, 1024]);
    same(toFloat64(t), [1.5, -2.25, 0, 3, -0.125, 1024]);
    bytes[bytes.length - 1] = 0; // "mask"'s last byte
    expect(decodeSafetensors(bytes).tensors.get('mask')!.data[2]).toBe(0);
  });
});

describe('half-precision conversions', () => {
  it('float32ToFloat16Bits: hand-computed table', () => {
    const table: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [-1.5, 0xbe00],
      [0.1, 0x2e66], // 1.6 × 2^-4: exponent 11, mantissa 0.6 × 1024 = 614.4 → 614
      [1 / 3, 0x3555],
      [65504, 0x7bff], // largest finite
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 2^16 rounds to even, which is the infinity pattern
      [2 ** -24, 0x0001], // smallest subnormal
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // tie between 0x03FF (odd) and 0x0400: up into the normals
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even 0
      [2 ** -25 + 2 ** -40, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 quanta: to even 2
      [1 + 2 ** -11, 0x3c00], // tie between 0x3C00 and 0x3C01: to even
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3C01 and 0x3C02: to even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [1 + 2 ** -11 + 2 ** -40, 0x3c01], // a double: rounding via float32 first would wrongly give 0x3C00
      [1e-10, 0x0000],
      [-1e-10, 0x8000],
      [0, 0x0000],
      [-0, 0x8000],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
    ];
    for (const [x, bits] of table) expect(float32ToFloat16Bits(x).toString(16), String(x)).toBe(bits.toString(16));
    const nan = float32ToFloat16Bits(Number.NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });

  it('float32ToBFloat16Bits: hand-computed table', () => {
    const table: [number, number][] = [
      [1, 0x3f80],
      [-2, 0xc000],
      [3.140625, 0x4049],
      [0.1, 0x3dcd], // float32 0x3DCCCCCD: the low half 0xCCCD is above the tie, so up (truncation gives 0x3DCC)
      [65504, 0x4780], // rounds up to 65536; bfloat16 has the float32 range, so no overflow here
      [65520, 0x4780],
      [3.3895313892515355e38, 0x7f7f], // largest finite
      [3.4028234663852886e38, 0x7f80], // float32 max is past the halfway point: infinity
      [2 ** -133, 0x0001], // smallest subnormal
      [2 ** -134, 0x0000], // tie: to even 0
      [3 * 2 ** -134, 0x0002], // tie between 1 and 2: to even
      [2 ** -126, 0x0080], // smallest normal
      [1 + 2 ** -8, 0x3f80], // tie: to even
      [1 + 3 * 2 ** -8, 0x3f82], // tie: to even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [0, 0x0000],
      [-0, 0x8000],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
    ];
    for (const [x, bits] of table) expect(float32ToBFloat16Bits(x).toString(16), String(x)).toBe(bits.toString(16));
    const nan = float32ToBFloat16Bits(Number.NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x007f).not.toBe(0);
  });

  it('bits → value tables', () => {
    const f16: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x0400, 2 ** -14],
      [0x3555, 0.333251953125],
      [0x0000, 0],
      [0x8000, -0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
      [0x7e00, Number.NaN],
      [0x7c01, Number.NaN],
      [0xfe00, Number.NaN],
    ];
    for (const [bits, v] of f16) expect(Object.is(float16BitsToFloat32(bits), v), bits.toString(16)).toBe(true);
    const bf16: [number, number][] = [
      [0x3f80, 1],
      [0xc000, -2],
      [0x0001, 2 ** -133],
      [0x7f7f, 3.3895313892515355e38],
      [0x8000, -0],
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x7fc0, Number.NaN],
      [0x7f81, Number.NaN],
    ];
    for (const [bits, v] of bf16) expect(Object.is(bfloat16BitsToFloat32(bits), v), bits.toString(16)).toBe(true);
  });

  it('every non-NaN 16-bit pattern survives bits → value → bits', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const h = float16BitsToFloat32(bits);
      if (!Number.isNaN(h) && float32ToFloat16Bits(h) !== bits) throw new Error(`F16 0x${bits.toString(16)} → ${h} → 0x${float32ToFloat16Bits(h).toString(16)}`);
      const b = bfloat16BitsToFloat32(bits);
      if (!Number.isNaN(b) && float32ToBFloat16Bits(b) !== bits) throw new Error(`BF16 0x${bits.toString(16)} → ${b} → 0x${float32ToBFloat16Bits(b).toString(16)}`);
      // A decoded half is always an exact float32.
      if (Math.fround(h) !== h && !Number.isNaN(h)) throw new Error(`F16 0x${bits.toString(16)} is not a float32`);
    }
  });

  it('random float32 values round to the nearest representable half, ties to even', () => {
    // mulberry32: a fixed seed keeps the test reproducible.
    let seed = 0x9e3779b9;
    const next = (): number => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (t ^ (t >>> 14)) >>> 0;
    };
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const formats = [
      { name: 'F16', to: float32ToFloat16Bits, from: float16BitsToFloat32, maxFinite: 0x7bff },
      { name: 'BF16', to: float32ToBFloat16Bits, from: bfloat16BitsToFloat32, maxFinite: 0x7f7f },
    ];
    for (let i = 0; i < 20_000; i++) {
      const raw = next();
      // Squeeze the exponent toward the F16 range half of the time so subnormals and overflow get exercised.
      u32[0] = i % 2 === 0 ? (raw & 0x807fffff) | ((100 + (next() % 60)) << 23) : raw;
      const x = Math.abs(f32[0]!);
      if (!Number.isFinite(x)) continue;
      for (const f of formats) {
        const bits = f.to(x);
        const v = f.from(bits);
        const up = bits < f.maxFinite ? f.from(bits + 1) : Infinity;
        const down = bits > 0 ? f.from(bits - 1) : -f.from(1);
        const d = Math.abs(x - v);
        const ok = bits === f.maxFinite + 1 ? x - f.from(f.maxFinite) >= (f.from(f.maxFinite) - f.from(f.maxFinite - 1)) / 2 : d <= x - down && d <= up - x;
        const tieOk = bits > f.maxFinite || (d !== x - down && d !== up - x) || d === 0 || bits % 2 === 0;
        if (!ok || !tieOk) throw new Error(`${f.name}: ${x} → 0x${bits.toString(16)} (${v})`);
      }
    }
  });
});

describe('tensorFrom', () => {
  it('infers the dtype from the array type', () => {
    const cases: [Parameters<typeof tensorFrom>[0], SafetensorsDtype][] = [
      [new Float64Array(2), 'F64'],
      [new Float32Array(2), 'F32'],
      [new Int32Array(2), 'I32'],
      [new BigInt64Array(2), 'I64'],
      [new Int16Array(2), 'I16'],
      [new Int8Array(2), 'I8'],
      [new Uint8Array(2), 'U8'],
    ];
    for (const [array, dtype] of cases) {
      const t = tensorFrom(array, [2]);
      expect(t.dtype).toBe(dtype);
      expect(t.data.length).toBe(2 * dtypeItemSize(dtype));
    }
  });

  it('converts floats to the requested float dtype with round-to-nearest-even', () => {
    same(toFloat32(tensorFrom(new Float32Array([1, 1 + 2 ** -11, 65520]), [3], 'F16')), [1, 1, Infinity]);
    same(toFloat32(tensorFrom(new Float32Array([1 + 3 * 2 ** -8, 0.1]), [2], 'BF16')), [1 + 2 ** -6, 0.10009765625]);
    same(toFloat64(tensorFrom(new Float64Array([0.1]), [1], 'F32')), [Math.fround(0.1)]);
    same(toFloat64(tensorFrom(new Float64Array([1 + 2 ** -11 + 2 ** -40]), [1], 'F16')), [1 + 2 ** -10]);
    same(toFloat64(tensorFrom(new Float32Array([0.1]), [1], 'F64')), [Math.fround(0.1)]);
    expect(Array.from(tensorFrom(new Float32Array([1, -2]), [2], 'F16').data)).toEqual([0x00, 0x3c, 0x00, 0xc0]);
    expect(Array.from(tensorFrom(new Float32Array([1, -2]), [2], 'BF16').data)).toEqual([0x80, 0x3f, 0x00, 0xc0]);
  });

  it('copies: later changes to the source array do not leak into the tensor; subarrays are honoured', () => {
    const source = new Float32Array([1, 2, 3, 4]);
    const t = tensorFrom(source.subarray(1, 3), [2]);
    source[1] = 99;
    same(toFloat32(t), [2, 3]);
  });

  it('rejects shape mismatches, bad shapes, lossy dtype pairings and non-0/1 BOOL values', () => {
    expectThrows(() => tensorFrom(new Float32Array(6), [2, 2]), 'tensorFrom', 'shape [2,2] holds 4 values but the array has 6');
    expectThrows(() => tensorFrom(new Float32Array(0), [-1]), 'tensorFrom', 'shape');
    expectThrows(() => tensorFrom(new Float32Array(2), [2.5]), 'tensorFrom', 'shape');
    expectThrows(() => tensorFrom(new Int32Array(2), [2], 'F32'), 'tensorFrom', 'Int32Array', 'F32');
    expectThrows(() => tensorFrom(new Float32Array(2), [2], 'I32'), 'tensorFrom', 'I32');
    expectThrows(() => tensorFrom(new Uint8Array([0, 2]), [2], 'BOOL'), 'tensorFrom', 'BOOL', 'index 1');
    expectThrows(() => tensorFrom(new Float32Array(1), [1], 'F8' as never), 'tensorFrom', 'F8');
    expectThrows(() => tensorFrom([1, 2] as never, [2]), 'tensorFrom', 'unsupported array');
  });
});

describe('toFloat32 / toFloat64', () => {
  it('round F64 and integers to float32 where needed', () => {
    same(toFloat32(tensorFrom(new Float64Array([0.1, 1e300]), [2])), [Math.fround(0.1), Infinity]);
    same(toFloat32(tensorFrom(new Int32Array([16777217]), [1])), [16777216]);
    same(toFloat64(tensorFrom(new BigInt64Array([2n ** 53n + 1n]), [1])), [2 ** 53]);
  });

  it('refuse BOOL and malformed tensors', () => {
    const bool = tensorFrom(new Uint8Array([1]), [1], 'BOOL');
    expectThrows(() => toFloat32(bool), 'toFloat32', 'BOOL');
    expectThrows(() => toFloat64(bool), 'toFloat64', 'BOOL');
    expectThrows(() => toFloat32({ dtype: 'F32', shape: [2], data: new Uint8Array(4) }), 'toFloat32', 'data is 4 bytes', 'needs 8');
    expectThrows(() => toFloat64({ dtype: 'Q4' as never, shape: [1], data: new Uint8Array(1) }), 'toFloat64', 'unknown dtype "Q4"');
  });
});

describe('decode validation', () => {
  const ok = (obj: unknown): string => JSON.stringify(obj);
  const f32 = (begin: number, end: number, shape = [1]): unknown => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it('accepts a valid file whose header lists tensors out of data order, with a zero-size tensor at a boundary', () => {
    const file = rawFile(ok({ b: f32(4, 8), z: { dtype: 'U8', shape: [0], data_offsets: [4, 4] }, a: f32(0, 4) }) + '   ', [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
    const back = decodeSafetensors(file, SOURCE);
    expect([...back.tensors.keys()]).toEqual(['a', 'z', 'b']);
    same(toFloat32(back.tensors.get('b')!), [2]);
  });

  it('file shorter than 8 bytes', () => {
    expectDecodeError(new Uint8Array(5), 'file is 5 bytes', '8-byte header length');
    expectDecodeError(new Uint8Array(0), 'file is 0 bytes');
  });

  it('header length past the end of the file, or absurd', () => {
    const file = rawFile('{}');
    new DataView(file.buffer).setBigUint64(0, 1000n, true);
    expectDecodeError(file, 'header length 1000', `${file.length}-byte file`);
    new DataView(file.buffer).setBigUint64(0, 2n ** 40n, true);
    expectDecodeError(file, `header length ${2 ** 40}`, String(MAX_HEADER_BYTES));
    new DataView(file.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
    expectDecodeError(file, `header length ${MAX_HEADER_BYTES + 1}`, 'limit');
    new DataView(file.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    expectDecodeError(file, 'header length 18446744073709551615');
  });

  it('header not UTF-8, not JSON, or not an object', () => {
    const bad = rawFile('{}');
    bad.set([0xff], 9);
    expectDecodeError(bad, 'header is not valid UTF-8');
    expectDecodeError(rawFile('{"a":'), 'header is not valid JSON');
    expectDecodeError(rawFile(''), 'header is not valid JSON');
    expectDecodeError(rawFile('\ufeff{}'), 'header is not valid JSON');
    expectDecodeError(rawFile('[1]'), 'header must be a JSON object', 'array');
    expectDecodeError(rawFile('null'), 'header must be a JSON object', 'null');
    expectDecodeError(rawFile('42'), 'header must be a JSON object', '42');
  });

  it('tensor entries: not an object, missing or unknown fields, empty name', () => {
    expectDecodeError(rawFile(ok({ w: 3 })), 'tensor "w"', 'entry must be an object');
    expectDecodeError(rawFile(ok({ w: { dtype: 'F32', shape: [1] } }), 4), 'tensor "w"', 'missing field "data_offsets"');
    expectDecodeError(rawFile(ok({ w: { shape: [1], data_offsets: [0, 4] } }), 4), 'tensor "w"', 'missing field "dtype"');
    expectDecodeError(rawFile(ok({ w: { ...(f32(0, 4) as object), extra: 1 } }), 4), 'tensor "w"', 'unknown field "extra"');
    expectDecodeError(rawFile(ok({ '': f32(0, 4) }), 4), 'tensor ""', 'non-empty');
  });

  it('unknown dtype', () => {
    expectDecodeError(rawFile(ok({ w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }), 1), 'tensor "w"', 'unknown dtype "F8_E4M3"');
    expectDecodeError(rawFile(ok({ w: { dtype: 'f32', shape: [1], data_offsets: [0, 4] } }), 4), 'tensor "w"', 'dtype "f32"');
    expectDecodeError(rawFile(ok({ w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }), 4), 'tensor "w"', 'unknown dtype 4');
  });

  it('shape not an array of non-negative integers', () => {
    for (const shape of ['2', [-1], [1.5], ['1'], [null], [true], { 0: 1 }, [2 ** 53]]) {
      expectDecodeError(rawFile(ok({ w: { dtype: 'U8', shape, data_offsets: [0, 1] } }), 1), 'tensor "w"', 'shape must be an array of non-negative integers');
    }
    // Dimensions whose product is not exactly representable are rejected too.
    expectDecodeError(rawFile(ok({ w: { dtype: 'U8', shape: [2 ** 30, 2 ** 30], data_offsets: [0, 1] } }), 1), 'tensor "w"', 'shape');
  });

  it('data_offsets not two integers with begin ≤ end', () => {
    for (const offsets of [[0], [0, 4, 8], ['0', 4], [-1, 3], [0.5, 4], null, '0,4']) {
      expectDecodeError(rawFile(ok({ w: { dtype: 'F32', shape: [1], data_offsets: offsets } }), 4), 'tensor "w"', 'data_offsets must be two non-negative integers');
    }
    expectDecodeError(rawFile(ok({ w: f32(8, 4) }), 8), 'tensor "w"', 'data_offsets [8, 4] has begin after end');
  });

  it('byte size ≠ prod(shape) × itemsize', () => {
    expectDecodeError(rawFile(ok({ w: f32(0, 4, [2]) }), 4), 'tensor "w"', 'data_offsets [0, 4] span 4 bytes but F32 [2] needs 8');
    expectDecodeError(rawFile(ok({ w: { dtype: 'F16', shape: [0], data_offsets: [0, 2] } }), 2), 'tensor "w"', 'needs 0');
  });

  it('offsets out of the data buffer', () => {
    expectDecodeError(rawFile(ok({ w: f32(0, 4) }), 2), 'tensor "w"', 'data_offsets [0, 4] run past the end of the 2-byte data buffer');
  });

  it('overlapping tensors', () => {
    expectDecodeError(rawFile(ok({ a: f32(0, 4), b: f32(2, 6) }), 6), 'tensor "b"', 'data_offsets [2, 6] overlap tensor "a"');
    expectDecodeError(rawFile(ok({ a: f32(0, 4), b: f32(0, 4) }), 4), 'tensor "b"', 'overlap tensor "a"');
    expectDecodeError(rawFile(ok({ a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, z: { dtype: 'U8', shape: [0], data_offsets: [2, 2] } }), 4), 'tensor "z"', 'overlap tensor "a"');
  });

  it('gaps, leading or trailing bytes: the tensors must tile the data buffer exactly', () => {
    expectDecodeError(rawFile(ok({ a: f32(0, 4), b: f32(8, 12) }), 12), 'tensor "b"', 'gap', 'bytes [4, 8)');
    expectDecodeError(rawFile(ok({ a: f32(2, 6) }), 6), 'tensor "a"', 'gap', 'bytes [0, 2)');
    expectDecodeError(rawFile(ok({ a: f32(0, 4) }), 6), 'data buffer is 6 bytes', 'data_offsets cover only [0, 4)');
    expectDecodeError(rawFile(ok({}), 1), 'data buffer is 1 bytes');
  });

  it('__metadata__ not a string → string map', () => {
    for (const meta of ['pt', ['pt'], null, 3]) {
      expectDecodeError(rawFile(ok({ __metadata__: meta })), '__metadata__ must be an object mapping strings to strings');
    }
    expectDecodeError(rawFile(ok({ __metadata__: { format: 'pt', epoch: 3 } })), '__metadata__ "epoch" must be a string, got 3');
    expectDecodeError(rawFile(ok({ __metadata__: { nested: { a: 'b' } } })), '__metadata__ "nested"', '{"a":"b"}');
  });

  it('names a default source when none is given', () => {
    expect(decodeError(new Uint8Array(3), (b) => decodeSafetensors(b))).toMatch(/^safetensors data: /);
  });
});

describe('encode validation', () => {
  const w = (): SafeTensor => tensorFrom(new Float32Array([1]), [1]);

  it('invalid names', () => {
    expectThrows(() => encodeSafetensors({ '': w() }), 'encodeSafetensors', 'tensor names must be non-empty', '""');
    expectThrows(() => encodeSafetensors(new Map([[42 as never, w()]])), 'encodeSafetensors', 'non-empty strings', '42');
    expectThrows(() => encodeSafetensors({ __metadata__: w() }), 'encodeSafetensors', '"__metadata__" is reserved');
    expectThrows(() => encodeSafetensors({ ['bad\ud800']: w() }), 'encodeSafetensors', 'lone surrogate');
  });

  it('data length mismatch, bad shape, unknown dtype, data of the wrong type', () => {
    expectThrows(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 3], data: new Uint8Array(20) } }), 'encodeSafetensors: tensor "w"', 'data is 20 bytes but F32 [2,3] needs 24');
    for (const shape of [[-1], [1.5], [Number.NaN], 'x', [2 ** 53]]) {
      expectThrows(() => encodeSafetensors({ w: { dtype: 'U8', shape: shape as never, data: new Uint8Array(1) } }), 'encodeSafetensors: tensor "w"', 'shape must be an array of non-negative integers');
    }
    expectThrows(() => encodeSafetensors({ w: { dtype: 'F8' as never, shape: [1], data: new Uint8Array(1) } }), 'encodeSafetensors: tensor "w"', 'unknown dtype "F8"');
    expectThrows(() => encodeSafetensors({ w: { dtype: 'U8', shape: [1], data: [1] as never } }), 'encodeSafetensors: tensor "w"', 'data must be a Uint8Array');
    expectThrows(() => encodeSafetensors({ w: null as never }), 'encodeSafetensors: tensor "w"', 'expected a tensor object');
  });

  it('non-string metadata', () => {
    expectThrows(() => encodeSafetensors({ w: w() }, { epoch: 3 as never }), 'encodeSafetensors', '__metadata__ "epoch" must be a string, got 3');
    expectThrows(() => encodeSafetensors({ w: w() }, { x: undefined as never }), 'encodeSafetensors', '__metadata__ "x"', 'undefined');
    expectThrows(() => encodeSafetensors({ w: w() }, null as never), 'encodeSafetensors', '__metadata__ must be an object');
    expectThrows(() => encodeSafetensors({ w: w() }, { ['k\udc00']: 'v' }), 'encodeSafetensors', 'lone surrogate');
  });
});
