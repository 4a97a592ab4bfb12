// GGUF (the llama.cpp weights format, version 2 and 3): the header (metadata and tensor table) parsed
// from a prefix of the file, and tensors read one at a time and dequantised to float32 (F32, F16, BF16,
// Q8_0, Q4_0, Q4_1), so a model file is never held whole in memory. Also a writer, for tests and
// fixtures. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
import { open, type FileHandle } from 'node:fs/promises';
import { bfloat16BitsToFloat32, float16BitsToFloat32 } from './safetensors.js';

export class GgufError extends Error {
  override readonly name = 'GgufError';
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;

/** ggml tensor types by id, for messages; only the `supported` ones are dequantised. */
const TYPE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K',
  12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S',
  20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64',
  29: 'IQ1_M', 30: 'BF16', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
});

export type GgufTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1';

/** Elements per block and bytes per block of each supported type. */
const LAYOUT: Readonly<Record<GgufTensorType, { id: number; block: number; bytes: number }>> = Object.freeze({
  F32: { id: 0, block: 1, bytes: 4 },
  F16: { id: 1, block: 1, bytes: 2 },
  BF16: { id: 30, block: 1, bytes: 2 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  Q4_0: { id: 2, block: 32, bytes: 18 },
  Q4_1: { id: 3, block: 32, bytes: 20 },
});
export const SUPPORTED_GGUF_TYPES = Object.freeze(Object.keys(LAYOUT) as GgufTensorType[]);
const SUPPORTED_BY_ID = new Map(SUPPORTED_GGUF_TYPES.map((t) => [LAYOUT[t].id, t]));

export const ggufTypeName = (id: number): string => TYPE_NAMES[id] ?? `unknown type ${id}`;

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** GGUF order: dims[0] varies fastest, so a matrix of dims [in, out] is row-major [out, in]. */
  dims: number[];
  typeId: number;
  /** The type's name ("Q4_1", ...), or "unknown type N". */
  typeName: string;
  /** Absolute offset of the tensor's bytes in the file. */
  offset: number;
  /** Bytes of the tensor; undefined for a type this reader does not know the layout of. */
  byteLength: number | undefined;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Offset of the tensor data section. */
  dataOffset: number;
  /** Where the metadata key-value entries lie in the file, so a converted copy can carry them over byte for byte. */
  metadataSpan: { start: number; end: number; count: number };
}

/** Thrown by the parser when the bytes it was given end first; the file reader then reads more. */
class NeedMore extends Error {}

/** GGUF metadata value types. */
const ValueType = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;

// ignoreBOM keeps a leading U+FEFF: a token's text is its bytes (TextDecoder would drop it as a byte-order mark).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

class Cursor {
  private readonly view: DataView;
  at = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly fileSize: number,
    private readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number, what: string): number {
    const start = this.at;
    if (start + n > this.bytes.length) {
      if (this.bytes.length < this.fileSize) throw new NeedMore();
      throw new GgufError(`${this.source}: truncated: the file ends at byte ${this.fileSize} inside ${what} (at byte ${start}, ${n} bytes needed)`);
    }
    this.at += n;
    return start;
  }
  u8(what: string): number {
    return this.view.getUint8(this.need(1, what));
  }
  u32(what: string): number {
    return this.view.getUint32(this.need(4, what), true);
  }
  /** A uint64 that must be a safe integer (counts, lengths, offsets). */
  count(what: string): number {
    const v = this.view.getBigUint64(this.need(8, what), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.source}: ${what} is ${v}, beyond any file this size`);
    return Number(v);
  }
  string(what: string): string {
    const length = this.count(`the length of ${what}`);
    if (length > this.fileSize) throw new GgufError(`${this.source}: ${what} claims ${length} bytes, more than the file's ${this.fileSize}`);
    const start = this.need(length, what);
    try {
      return utf8.decode(this.bytes.subarray(start, start + length));
    } catch {
      throw new GgufError(`${this.source}: ${what} (at byte ${start}) is not valid UTF-8`);
    }
  }
  value(type: number, what: string): GgufValue {
    switch (type) {
      case ValueType.U8: return this.view.getUint8(this.need(1, what));
      case ValueType.I8: return this.view.getInt8(this.need(1, what));
      case ValueType.U16: return this.view.getUint16(this.need(2, what), true);
      case ValueType.I16: return this.view.getInt16(this.need(2, what), true);
      case ValueType.U32: return this.view.getUint32(this.need(4, what), true);
      case ValueType.I32: return this.view.getInt32(this.need(4, what), true);
      case ValueType.F32: return this.view.getFloat32(this.need(4, what), true);
      case ValueType.F64: return this.view.getFloat64(this.need(8, what), true);
      case ValueType.U64: return safe(this.view.getBigUint64(this.need(8, what), true));
      case ValueType.I64: return safe(this.view.getBigInt64(this.need(8, what), true));
      case ValueType.BOOL: {
        const b = this.view.getUint8(this.need(1, what));
        if (b > 1) throw new GgufError(`${this.source}: ${what} is a bool of value ${b}`);
        return b === 1;
      }
      case ValueType.STRING: return this.string(what);
      case ValueType.ARRAY: {
        const itemType = this.u32(`the item type of ${what}`);
        if (itemType === ValueType.ARRAY) throw new GgufError(`${this.source}: ${what} is an array of arrays, which GGUF does not allow`);
        const length = this.count(`the length of ${what}`);
        // Every item takes at least one byte: a longer array cannot be in this file.
        if (length > this.fileSize) throw new GgufError(`${this.source}: ${what} claims ${length} items, more than the file's ${this.fileSize} bytes`);
        const items: GgufValue[] = [];
        for (let i = 0; i < length; i++) items.push(this.value(itemType, `${what}[${i}]`));
        return items;
      }
      default:
        throw new GgufError(`${this.source}: ${what} has value type ${type}, which GGUF does not define`);
    }
  }
}

/** A 64-bit integer as a number where that is exact, else as a bigint. */
const safe = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

/** Parses the header from the first `bytes` of a file of `fileSize` bytes; throws NeedMore if that is too short. */
function parseHeader(bytes: Uint8Array, fileSize: number, source: string): GgufHeader {
  const c = new Cursor(bytes, fileSize, source);
  if (fileSize < 4 || (bytes.length >= 4 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true) !== MAGIC)) {
    const got = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new GgufError(`${source}: not a GGUF file (it starts with ${got || 'nothing'}, a GGUF file with "GGUF")`);
  }
  c.u32('the magic');
  const version = c.u32('the version');
  if (version !== 2 && version !== 3) throw new GgufError(`${source}: GGUF version ${version}; this reader knows versions 2 and 3`);
  const tensorCount = c.count('the tensor count');
  const kvCount = c.count('the metadata count');
  const metadata = new Map<string, GgufValue>();
  const metadataStart = c.at;
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`);
    const type = c.u32(`the value type of metadata ${key}`);
    if (metadata.has(key)) throw new GgufError(`${source}: metadata key ${key} appears twice`);
    metadata.set(key, c.value(type, `metadata ${key}`));
  }
  const alignmentValue = metadata.get('general.alignment') ?? DEFAULT_ALIGNMENT;
  if (typeof alignmentValue !== 'number' || !Number.isInteger(alignmentValue) || alignmentValue <= 0 || (alignmentValue & (alignmentValue - 1)) !== 0) {
    throw new GgufError(`${source}: general.alignment is ${String(alignmentValue)}; it must be a power of two`);
  }
  const alignment = alignmentValue;
  const metadataSpan = { start: metadataStart, end: c.at, count: kvCount };
  const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
  const relative: number[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`the name of tensor ${i}`);
    if (names.has(name)) throw new GgufError(`${source}: tensor ${name} appears twice`);
    names.add(name);
    const rank = c.u32(`the rank of tensor ${name}`);
    if (rank < 1 || rank > MAX_DIMS) throw new GgufError(`${source}: tensor ${name} has ${rank} dimensions; GGUF allows 1 to ${MAX_DIMS}`);
    const dims: number[] = [];
    for (let d = 0; d < rank; d++) dims.push(c.count(`dimension ${d} of tensor ${name}`));
    if (dims.some((d) => d === 0)) throw new GgufError(`${source}: tensor ${name} has an empty dimension [${dims.join(', ')}]`);
    const elements = elementCount({ dims });
    if (!Number.isSafeInteger(elements) || elements > fileSize * 8) throw new GgufError(`${source}: tensor ${name} has dimensions [${dims.join(', ')}], too large for this file`);
    const typeId = c.u32(`the type of tensor ${name}`);
    const offset = c.count(`the data offset of tensor ${name}`);
    if (offset % alignment !== 0) throw new GgufError(`${source}: tensor ${name} starts at data offset ${offset}, not a multiple of the alignment ${alignment}`);
    const supported = SUPPORTED_BY_ID.get(typeId);
    let byteLength: number | undefined;
    if (supported) {
      const { block, bytes: blockBytes } = LAYOUT[supported];
      if (dims[0]! % block !== 0) throw new GgufError(`${source}: tensor ${name} (${supported}) has rows of ${dims[0]} elements, not a multiple of its block size ${block}`);
      byteLength = (elements / block) * blockBytes;
    }
    infos.push({ name, dims, typeId, typeName: ggufTypeName(typeId), byteLength });
    relative.push(offset);
  }
  const dataOffset = Math.ceil(c.at / alignment) * alignment;
  const tensors = infos.map((t, i) => ({ ...t, offset: dataOffset + relative[i]! }));
  for (const t of tensors) {
    if (t.byteLength !== undefined && t.offset + t.byteLength > fileSize) {
      throw new GgufError(`${source}: truncated: tensor ${t.name} needs bytes ${t.offset} to ${t.offset + t.byteLength}, but the file ends at ${fileSize}`);
    }
  }
  return { version, metadata, tensors, alignment, dataOffset, metadataSpan };
}

/** Parses a whole GGUF held in memory (small files, tests). */
export function decodeGgufHeader(bytes: Uint8Array, source = 'GGUF data'): GgufHeader {
  return parseHeader(bytes, bytes.length, source);
}

/** A GGUF file opened for reading: its header, and its tensors one at a time. */
export class GgufReader {
  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly header: GgufHeader,
  ) {}

  static async open(path: string): Promise<GgufReader> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      // The header holds the vocabulary (a few MB for a 50k-token model): read a prefix, and more if needed.
      for (let length = Math.min(size, 4 << 20); ; length = Math.min(size, length * 4)) {
        const bytes = new Uint8Array(length);
        const { bytesRead } = await handle.read(bytes, 0, length, 0);
        try {
          return new GgufReader(handle, path, parseHeader(bytes.subarray(0, bytesRead), bytesRead < length ? bytesRead : size, path));
        } catch (err) {
          if (!(err instanceof NeedMore) || length === size) throw err;
        }
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.header.tensors.find((x) => x.name === name);
    if (!t) throw new GgufError(`${this.path}: no tensor ${name}`);
    return t;
  }

  /** The tensor's values as float32, in row-major order of its reversed dims (the Hugging Face shape). */
  async read(name: string): Promise<Float32Array> {
    const t = this.tensor(name);
    const type = SUPPORTED_BY_ID.get(t.typeId);
    if (!type || t.byteLength === undefined) throw unsupported(this.path, t);
    const bytes = new Uint8Array(t.byteLength);
    const { bytesRead } = await this.handle.read(bytes, 0, t.byteLength, t.offset);
    if (bytesRead !== t.byteLength) throw new GgufError(`${this.path}: truncated: tensor ${name} has ${bytesRead} of its ${t.byteLength} bytes`);
    return dequantize(type, bytes, elementCount(t), `${this.path}: tensor ${name}`);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

const elementCount = (t: Pick<GgufTensorInfo, 'dims'>): number => t.dims.reduce((a, b) => a * b, 1);

/** The error for a tensor whose type this reader does not dequantise. */
function unsupported(source: string, t: GgufTensorInfo): GgufError {
  return new GgufError(`${source}: tensor ${t.name} has type ${t.typeName}, which this importer does not dequantise (it reads ${SUPPORTED_GGUF_TYPES.join(', ')})`);
}

/**
 * `count` values of `type` from their bytes. Q8_0: blocks of 32 as a float16 scale d and 32 int8 q, x = d·q.
 * Q4_0: d and 16 bytes whose low nibbles are elements 0–15 and high nibbles 16–31, x = d·(q − 8). Q4_1: d, a
 * float16 minimum m, and the nibbles as in Q4_0, x = d·q + m. Each product is exact in float32, as in ggml.
 */
export function dequantize(type: GgufTensorType, bytes: Uint8Array, count: number, what: string): Float32Array {
  const { block, bytes: blockBytes } = LAYOUT[type];
  if (count % block !== 0 || bytes.length !== (count / block) * blockBytes) {
    throw new GgufError(`${what}: ${bytes.length} bytes for ${count} ${type} values (expected ${(Math.ceil(count / block) * blockBytes)})`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (type) {
    case 'F32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = float16BitsToFloat32(view.getUint16(2 * i, true));
      break;
    case 'BF16':
      for (let i = 0; i < count; i++) out[i] = bfloat16BitsToFloat32(view.getUint16(2 * i, true));
      break;
    case 'Q8_0':
      for (let b = 0, at = 0; b < count / 32; b++, at += 34) {
        const d = float16BitsToFloat32(view.getUint16(at, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(at + 2 + j);
      }
      break;
    case 'Q4_0':
      for (let b = 0, at = 0; b < count / 32; b++, at += 18) {
        const d = float16BitsToFloat32(view.getUint16(at, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[at + 2 + j]!;
          out[b * 32 + j] = d * ((q & 0x0f) - 8);
          out[b * 32 + j + 16] = d * ((q >> 4) - 8);
        }
      }
      break;
    case 'Q4_1':
      for (let b = 0, at = 0; b < count / 32; b++, at += 20) {
        const d = float16BitsToFloat32(view.getUint16(at, true));
        const m = float16BitsToFloat32(view.getUint16(at + 2, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[at + 4 + j]!;
          // ggml adds in float32: round d·q + m once to float32 (d·q is exact, and so is the sum in float64 here).
          out[b * 32 + j] = Math.fround(d * (q & 0x0f) + m);
          out[b * 32 + j + 16] = Math.fround(d * (q >> 4) + m);
        }
      }
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing, for tests and fixtures.

export interface GgufTensorToWrite {
  name: string;
  /** GGUF order (dims[0] fastest). */
  dims: number[];
  /** A ggml type id (types this module does not know are written as given, for tests of refusals). */
  typeId: number;
  /** The encoded bytes. */
  data: Uint8Array;
}

/** A metadata value with its GGUF type, since a JS number does not say which integer type it is. */
export type TypedValue = { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'u64' | 'i64' | 'bool' | 'string'; value: number | bigint | boolean | string } | { type: 'array'; itemType: TypedValue['type']; items: (number | bigint | boolean | string)[] };

const TYPE_IDS: Record<string, number> = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 };

/**
 * Serialises a GGUF version 3 file. `metadata` is a list of typed entries, or entries already encoded
 * (another file's metadataSpan bytes and their count), e.g. to write a file's tensors in another type.
 */
export function encodeGguf(metadata: [string, TypedValue][] | { bytes: Uint8Array; count: number }, tensors: GgufTensorToWrite[], alignment = DEFAULT_ALIGNMENT): Uint8Array {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  const u32 = (v: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    parts.push(b);
  };
  const u64 = (v: number | bigint): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    parts.push(b);
  };
  const str = (s: string): void => {
    const bytes = enc.encode(s);
    u64(bytes.length);
    parts.push(bytes);
  };
  const scalar = (type: string, v: number | bigint | boolean | string): void => {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    const n = (): number => Number(v);
    switch (type) {
      case 'u8': case 'bool': parts.push(Uint8Array.of(type === 'bool' ? (v ? 1 : 0) : n())); return;
      case 'i8': dv.setInt8(0, n()); parts.push(b.subarray(0, 1)); return;
      case 'u16': dv.setUint16(0, n(), true); parts.push(b.subarray(0, 2)); return;
      case 'i16': dv.setInt16(0, n(), true); parts.push(b.subarray(0, 2)); return;
      case 'u32': dv.setUint32(0, n(), true); parts.push(b.subarray(0, 4)); return;
      case 'i32': dv.setInt32(0, n(), true); parts.push(b.subarray(0, 4)); return;
      case 'f32': dv.setFloat32(0, n(), true); parts.push(b.subarray(0, 4)); return;
      case 'f64': dv.setFloat64(0, n(), true); parts.push(b); return;
      case 'u64': dv.setBigUint64(0, BigInt(v), true); parts.push(b); return;
      case 'i64': dv.setBigInt64(0, BigInt(v), true); parts.push(b); return;
      case 'string': str(String(v)); return;
    }
  };
  u32(MAGIC);
  u32(3);
  u64(tensors.length);
  if (Array.isArray(metadata)) {
    u64(metadata.length);
    for (const [key, v] of metadata) {
      str(key);
      u32(TYPE_IDS[v.type]!);
      if (v.type === 'array') {
        u32(TYPE_IDS[v.itemType]!);
        u64(v.items.length);
        for (const item of v.items) scalar(v.itemType, item);
      } else scalar(v.type, v.value);
    }
  } else {
    u64(metadata.count);
    parts.push(metadata.bytes);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.typeId);
    u64(offset);
    offsets.push(offset);
    offset = Math.ceil((offset + t.data.length) / alignment) * alignment;
  }
  const headerLength = parts.reduce((a, p) => a + p.length, 0);
  const dataOffset = Math.ceil(headerLength / alignment) * alignment;
  const out = new Uint8Array(dataOffset + offset);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  tensors.forEach((t, i) => out.set(t.data, dataOffset + offsets[i]!));
  return out;
}
