// Safetensors (the Hugging Face weights format) as pure bytes: model weights and optimizer state written here
// load in other tools and theirs load here. Callers own the file I/O.

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface SafeTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** raw little-endian bytes, exactly prod(shape) × itemsize */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
}

const ITEM_SIZE: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = Object.freeze(Object.keys(ITEM_SIZE) as SafetensorsDtype[]);

/** The reference (Rust) reader's header limit: larger means a corrupt or hostile file, not a big model. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';
const TENSOR_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

export function dtypeItemSize(dtype: SafetensorsDtype): number {
  return ITEM_SIZE[dtype];
}

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(ITEM_SIZE, value);
}

// Typed-array fast paths reinterpret bytes in host order, which only matches the format on little-endian hosts.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------------------------
// Half-precision conversions (shared with other weight readers, e.g. GGUF).

interface HalfFormat {
  mantissaBits: number;
  bias: number;
  infinity: number;
  quietNaN: number;
}

const F16_FORMAT: HalfFormat = { mantissaBits: 10, bias: 15, infinity: 0x7c00, quietNaN: 0x7e00 };
const BF16_FORMAT: HalfFormat = { mantissaBits: 7, bias: 127, infinity: 0x7f80, quietNaN: 0x7fc0 };

const scratch = new DataView(new ArrayBuffer(8));

/** 2^k built from its bit pattern, because `2 ** k` is not guaranteed exact by the spec. k ∈ [-1022, 1023]. */
function pow2(k: number): number {
  scratch.setUint32(0, (k + 1023) << 20);
  scratch.setUint32(4, 0);
  return scratch.getFloat64(0);
}

/**
 * Rounds the exact value of `x` (a double, so float32 and float64 inputs are both handled without double
 * rounding) to a binary16-style format, round-to-nearest-even, overflowing to ±Inf.
 */
function roundToHalfBits(x: number, f: HalfFormat): number {
  if (Number.isNaN(x)) return f.quietNaN;
  scratch.setFloat64(0, x);
  const hi = scratch.getUint32(0);
  const sign = (hi >>> 16) & 0x8000;
  const a = Math.abs(x);
  if (a === 0) return sign;
  // Unbiased double exponent; double subnormals come out as -1023, far below any target's range, which is right.
  const e = ((hi >>> 20) & 0x7ff) - 1023;
  if (e > f.bias) return sign | f.infinity;
  const minExponent = 1 - f.bias;
  const eff = Math.max(e, minExponent);
  // Count of quanta 2^(eff − mantissaBits): scaling by a power of two is exact, so the only rounding is ours.
  const scaled = a * pow2(f.mantissaBits - eff);
  const whole = Math.floor(scaled);
  const frac = scaled - whole;
  const quanta = frac > 0.5 || (frac === 0.5 && whole % 2 === 1) ? whole + 1 : whole;
  // Adding the quanta on top of the exponent offset lets a mantissa carry bump the exponent, a subnormal round
  // up into the smallest normal, and the largest finite value round up into the infinity pattern.
  return sign | (((eff - minExponent) << f.mantissaBits) + quanta);
}

/**
 * Bits of the nearest IEEE binary16 (round-to-nearest-even, overflow to ±Inf, NaN → 0x7E00). Takes any number
 * and rounds its exact value, so float64 inputs are not double-rounded through float32.
 */
export function float32ToFloat16Bits(x: number): number {
  return roundToHalfBits(x, F16_FORMAT);
}

/** Bits of the nearest bfloat16 (round-to-nearest-even, not truncation; NaN → 0x7FC0). Takes any number, as above. */
export function float32ToBFloat16Bits(x: number): number {
  return roundToHalfBits(x, BF16_FORMAT);
}

/** The binary16 value of the low 16 bits of `bits` (exactly representable as float32). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : Number.NaN;
  if (exponent === 0) return sign * mantissa * pow2(-24);
  return sign * (mantissa + 0x400) * pow2(exponent - 25);
}

/** The bfloat16 value of the low 16 bits of `bits`: bfloat16 is the top half of a float32. */
export function bfloat16BitsToFloat32(bits: number): number {
  scratch.setUint32(0, ((bits & 0xffff) << 16) >>> 0);
  return scratch.getFloat32(0);
}

// ---------------------------------------------------------------------------------------------------------------
// Validation shared by encode, decode and the converters.

function describe(value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return typeof value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  try {
    // Non-finite numbers and bigints only reach here nested in arrays/objects (e.g. a shape from a JS caller).
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' || (typeof v === 'number' && !Number.isFinite(v)) ? String(v) : v));
  } catch {
    return 'an unserialisable value';
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Element count of a valid shape, or undefined. The product must stay exact, hence the safe-integer check. */
function elementCount(shape: unknown): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let count = 1;
  for (const dim of shape as unknown[]) {
    if (!isNonNegativeInteger(dim)) return undefined;
    count *= dim;
  }
  return Number.isSafeInteger(count) ? count : undefined;
}

/** Checks a tensor object in memory; returns its byte length. `where` prefixes every message. */
function checkTensor(t: unknown, where: string): number {
  if (!isPlainObject(t)) throw new SafetensorsError(`${where}: expected a tensor object, got ${describe(t)}`);
  if (!isSafetensorsDtype(t.dtype)) {
    throw new SafetensorsError(`${where}: unknown dtype ${describe(t.dtype)} (expected one of ${SAFETENSORS_DTYPES.join(', ')})`);
  }
  const count = elementCount(t.shape);
  if (count === undefined) throw new SafetensorsError(`${where}: shape must be an array of non-negative integers, got ${describe(t.shape)}`);
  if (!(t.data instanceof Uint8Array)) throw new SafetensorsError(`${where}: data must be a Uint8Array`);
  const expected = count * ITEM_SIZE[t.dtype];
  if (t.data.length !== expected) {
    throw new SafetensorsError(`${where}: data is ${t.data.length} bytes but ${t.dtype} ${describe(t.shape)} needs ${expected}`);
  }
  return expected;
}

// ---------------------------------------------------------------------------------------------------------------
// Encode

/**
 * The official writer's data layout: by dtype in this order, then by name. Largest items first keeps every
 * tensor aligned to its item size (the data buffer starts 8-aligned), which zero-copy and mmap loaders need,
 * and it makes our bytes identical to `safetensors.save_file`'s for the same tensors.
 */
const WRITE_ORDER: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  I64: 0,
  F64: 1,
  F32: 2,
  I32: 3,
  BF16: 4,
  F16: 5,
  I16: 6,
  I8: 7,
  U8: 8,
  BOOL: 9,
});

/** Code-point order, which is UTF-8 byte order: how the Rust writer compares names, unlike JS's `<`. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done === true || y.done === true) return (x.done === true ? 0 : 1) - (y.done === true ? 0 : 1);
    const d = (x.value.codePointAt(0) ?? 0) - (y.value.codePointAt(0) ?? 0);
    if (d !== 0) return d;
  }
}

// A lone surrogate cannot be written as UTF-8 (TextEncoder would silently substitute U+FFFD).
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Bytes of a safetensors file, laid out as the official writer does: tensors grouped by dtype (I64, F64, F32,
 * I32, BF16, F16, I16, I8, U8, BOOL), in name order within a dtype. Metadata values must be strings; metadata
 * is written in key order, and left out entirely when empty. The header is space-padded so the data buffer
 * starts 8-byte aligned.
 */
export function encodeSafetensors(tensors: Map<string, SafeTensor> | Record<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const { header, order, dataLength } = safetensorsLayout(tensors, metadata);
  const out = new Uint8Array(header.length + dataLength);
  out.set(header, 0);
  let at = header.length;
  for (const [, tensor] of order) {
    out.set(tensor.data, at);
    at += tensor.data.length;
  }
  return out;
}

export interface SafetensorsLayout {
  /** The 8-byte length and the padded JSON header: the file's first bytes. */
  header: Uint8Array;
  /** The tensors in the order their data follow the header. */
  order: [string, SafeTensor][];
  dataLength: number;
}

/**
 * What encodeSafetensors writes, without copying any tensor data: the header bytes and the data order, so a
 * writer can stream files too large for one buffer and still produce exactly encodeSafetensors' bytes.
 */
export function safetensorsLayout(tensors: Map<string, SafeTensor> | Record<string, SafeTensor>, metadata: Record<string, string> = {}): SafetensorsLayout {
  const where = 'encodeSafetensors';
  const entries: [string, SafeTensor][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const sizes = new Map<string, number>();
  for (const [name, tensor] of entries) {
    if (typeof name !== 'string' || name === '') throw new SafetensorsError(`${where}: tensor names must be non-empty strings, got ${describe(name)}`);
    if (name === METADATA_KEY) throw new SafetensorsError(`${where}: "${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (LONE_SURROGATE.test(name)) throw new SafetensorsError(`${where}: tensor name ${JSON.stringify(name)} is not valid Unicode (lone surrogate)`);
    sizes.set(name, checkTensor(tensor, `${where}: tensor ${JSON.stringify(name)}`));
  }
  entries.sort(([an, at], [bn, bt]) => WRITE_ORDER[at.dtype] - WRITE_ORDER[bt.dtype] || compareCodePoints(an, bn));

  if (!isPlainObject(metadata)) throw new SafetensorsError(`${where}: ${METADATA_KEY} must be an object of strings, got ${describe(metadata)}`);
  const metaEntries = Object.entries(metadata as Record<string, unknown>);
  for (const [key, value] of metaEntries) {
    if (typeof value !== 'string') throw new SafetensorsError(`${where}: ${METADATA_KEY} ${JSON.stringify(key)} must be a string, got ${describe(value)}`);
    if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) {
      throw new SafetensorsError(`${where}: ${METADATA_KEY} ${JSON.stringify(key)} is not valid Unicode (lone surrogate)`);
    }
  }
  metaEntries.sort(([a], [b]) => compareCodePoints(a, b));

  // The JSON is assembled by hand rather than via an object so that key order is ours and a tensor named
  // "__proto__" cannot turn into a prototype assignment.
  const parts: string[] = [];
  if (metaEntries.length > 0) {
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${metaEntries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  let offset = 0;
  for (const [name, tensor] of entries) {
    const size = sizes.get(name) ?? 0;
    const info = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + size] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += size;
  }

  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  if (headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${where}: header would be ${headerLength} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`);
  }
  const header = new Uint8Array(8 + headerLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLength), true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.length, 8 + headerLength);
  return { header, order: entries, dataLength: offset };
}

// ---------------------------------------------------------------------------------------------------------------
// Decode

/** A tensor as the header describes it; `begin` and `end` are byte offsets into the data buffer. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Where the data buffer starts in the file: 8 + the header length. */
  dataStart: number;
  /** In data-buffer order. */
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

/**
 * The header's size in bytes (8-byte length + JSON) from the file's first 8 bytes, checked against the
 * reader limit and the file's length, so a reader knows how much of a large file to read before parsing.
 */
export function safetensorsHeaderSize(first: Uint8Array, fileLength: number, source = 'safetensors data'): number {
  const problem = (what: string): SafetensorsError => new SafetensorsError(`${source}: ${what}`);
  if (!(first instanceof Uint8Array)) throw problem('expected the file contents as a Uint8Array');
  if (first.length < 8 || fileLength < 8) throw problem(`file is ${fileLength} bytes, too short for the 8-byte header length`);
  const headerLength = new DataView(first.buffer, first.byteOffset, first.byteLength).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw problem(`header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLength);
  if (8 + n > fileLength) throw problem(`header length ${n} runs past the end of the ${fileLength}-byte file`);
  return 8 + n;
}

/**
 * Parses and fully validates the header of a `fileLength`-byte safetensors file from `prefix`, its first
 * bytes (at least safetensorsHeaderSize of them): every tensor's dtype, shape and offsets, and that the
 * tensors tile the data buffer exactly. Reads no tensor data, so it works for files of any size.
 */
export function decodeSafetensorsHeader(prefix: Uint8Array, fileLength: number, source = 'safetensors data'): SafetensorsHeader {
  const problem = (what: string): SafetensorsError => new SafetensorsError(`${source}: ${what}`);
  const dataStart = safetensorsHeaderSize(prefix, fileLength, source);
  if (prefix.length < dataStart) throw problem(`only ${prefix.length} bytes of the ${dataStart}-byte header were given`);
  return parseHeaderJson(prefix, dataStart - 8, fileLength, problem);
}

/**
 * Parses and fully validates a safetensors file; `source` (e.g. the file name) is in every error message.
 *
 * Tensor `data` are zero-copy VIEWS into `bytes` (subarrays of the same buffer): writing to one changes the
 * other, and they keep the whole file's buffer alive. Copy with `data.slice()` where that matters. The map is
 * in data-buffer order.
 */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors data'): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw new SafetensorsError(`${source}: expected the file contents as a Uint8Array`);
  const { dataStart, entries, metadata } = decodeSafetensorsHeader(bytes, bytes.length, source);
  const tensors = new Map<string, SafeTensor>();
  for (const [name, e] of entries) tensors.set(name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  return { tensors, metadata };
}

function parseHeaderJson(prefix: Uint8Array, n: number, fileLength: number, problem: (what: string) => SafetensorsError): SafetensorsHeader {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so JSON.parse rejects it as the reference reader does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(prefix.subarray(8, 8 + n));
  } catch {
    throw problem('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw problem(`header is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isPlainObject(header)) throw problem(`header must be a JSON object, got ${Array.isArray(header) ? 'an array' : describe(header)}`);

  const dataStart = 8 + n;
  const dataLength = fileLength - dataStart;
  let metadata: Record<string, string> = {};
  const placed: (SafetensorsEntry & { name: string })[] = [];

  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(entry, problem);
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (name === '') throw problem(`${where}: tensor names must be non-empty`);
    if (!isPlainObject(entry)) throw problem(`${where}: entry must be an object with dtype, shape and data_offsets, got ${describe(entry)}`);
    for (const field of TENSOR_FIELDS) if (!Object.hasOwn(entry, field)) throw problem(`${where}: missing field "${field}"`);
    for (const field of Object.keys(entry)) {
      if (!(TENSOR_FIELDS as readonly string[]).includes(field)) throw problem(`${where}: unknown field ${JSON.stringify(field)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafetensorsDtype(dtype)) throw problem(`${where}: unknown dtype ${describe(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
    const count = elementCount(shape);
    if (count === undefined) throw problem(`${where}: shape must be an array of non-negative integers, got ${describe(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !isNonNegativeInteger(offsets[0]) || !isNonNegativeInteger(offsets[1])) {
      throw problem(`${where}: data_offsets must be two non-negative integers [begin, end], got ${describe(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw problem(`${where}: data_offsets [${begin}, ${end}] has begin after end`);
    const size = count * ITEM_SIZE[dtype];
    if (end - begin !== size) throw problem(`${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} ${describe(shape)} needs ${size}`);
    if (end > dataLength) throw problem(`${where}: data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data buffer`);
    placed.push({ name, dtype, shape: [...(shape as number[])], begin, end });
  }

  // The tensors must tile the data buffer exactly: no byte unaccounted for, none claimed twice.
  placed.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: (typeof placed)[number] | undefined;
  for (const p of placed) {
    if (p.begin < covered) {
      throw problem(`tensor ${JSON.stringify(p.name)}: data_offsets [${p.begin}, ${p.end}] overlap tensor ${JSON.stringify(previous?.name)}, which ends at ${covered}`);
    }
    if (p.begin > covered) throw problem(`tensor ${JSON.stringify(p.name)}: data_offsets [${p.begin}, ${p.end}] leave a gap: bytes [${covered}, ${p.begin}) of the data buffer belong to no tensor`);
    covered = p.end;
    previous = p;
  }
  if (covered !== dataLength) throw problem(`data buffer is ${dataLength} bytes but the tensors' data_offsets cover only [0, ${covered})`);

  return { dataStart, entries: new Map(placed.map(({ name, ...e }) => [name, e])), metadata };
}

function parseMetadata(entry: unknown, problem: (what: string) => SafetensorsError): Record<string, string> {
  if (!isPlainObject(entry)) throw problem(`${METADATA_KEY} must be an object mapping strings to strings, got ${describe(entry)}`);
  const pairs = Object.entries(entry);
  for (const [key, value] of pairs) {
    if (typeof value !== 'string') throw problem(`${METADATA_KEY} ${JSON.stringify(key)} must be a string, got ${describe(value)}`);
  }
  // fromEntries defines own properties, so a "__proto__" key stays a key.
  return Object.fromEntries(pairs) as Record<string, string>;
}

// ---------------------------------------------------------------------------------------------------------------
// Typed arrays in and out

export type TensorSourceArray = Float64Array | Float32Array | Int32Array | BigInt64Array | Int16Array | Int8Array | Uint8Array;

function arrayKind(array: TensorSourceArray): { natural: SafetensorsDtype; allowed: readonly SafetensorsDtype[] } {
  if (array instanceof Float64Array) return { natural: 'F64', allowed: ['F64', 'F32', 'F16', 'BF16'] };
  if (array instanceof Float32Array) return { natural: 'F32', allowed: ['F32', 'F64', 'F16', 'BF16'] };
  if (array instanceof Int32Array) return { natural: 'I32', allowed: ['I32'] };
  if (array instanceof BigInt64Array) return { natural: 'I64', allowed: ['I64'] };
  if (array instanceof Int16Array) return { natural: 'I16', allowed: ['I16'] };
  if (array instanceof Int8Array) return { natural: 'I8', allowed: ['I8'] };
  if (array instanceof Uint8Array) return { natural: 'U8', allowed: ['U8', 'BOOL'] };
  throw new SafetensorsError(`tensorFrom: unsupported array type ${Object.prototype.toString.call(array)}`);
}

/**
 * Builds a SafeTensor from a typed array (the bytes are always a fresh copy). The dtype defaults from the
 * array type; float arrays may also be stored as F64/F32/F16/BF16 (rounded to nearest even), and a Uint8Array
 * of 0/1 as BOOL. Integer arrays are only stored as their own type, so no value is silently wrapped.
 */
export function tensorFrom(array: TensorSourceArray, shape: number[], dtype?: SafetensorsDtype): SafeTensor {
  const where = 'tensorFrom';
  const kind = arrayKind(array);
  const target = dtype ?? kind.natural;
  if (!isSafetensorsDtype(target)) throw new SafetensorsError(`${where}: unknown dtype ${describe(target)}`);
  if (!kind.allowed.includes(target)) {
    throw new SafetensorsError(`${where}: a ${array.constructor.name} cannot be stored as ${target} (allowed: ${kind.allowed.join(', ')})`);
  }
  const count = elementCount(shape);
  if (count === undefined) throw new SafetensorsError(`${where}: shape must be an array of non-negative integers, got ${describe(shape)}`);
  if (count !== array.length) throw new SafetensorsError(`${where}: shape ${describe(shape)} holds ${count} values but the array has ${array.length}`);

  const size = ITEM_SIZE[target];
  // BOOL is only allowed from a Uint8Array, whose bytes are already the stored form.
  const sameRepresentation = target === kind.natural || target === 'BOOL';
  if (sameRepresentation && (HOST_IS_LITTLE_ENDIAN || size === 1)) {
    const data = new Uint8Array(array.buffer, array.byteOffset, array.byteLength).slice();
    checkBool(data, target);
    return { dtype: target, shape: [...shape], data };
  }

  const data = new Uint8Array(count * size);
  const view = new DataView(data.buffer);
  if (array instanceof BigInt64Array) {
    for (let i = 0; i < count; i++) view.setBigInt64(i * 8, array[i]!, true);
  } else {
    const write = numberWriter(target, view);
    for (let i = 0; i < count; i++) write(i, array[i]!);
  }
  checkBool(data, target);
  return { dtype: target, shape: [...shape], data };
}

function checkBool(data: Uint8Array, dtype: SafetensorsDtype): void {
  if (dtype !== 'BOOL') return;
  const bad = data.findIndex((b) => b > 1);
  if (bad >= 0) throw new SafetensorsError(`tensorFrom: BOOL values must be 0 or 1, got ${data[bad]} at index ${bad}`);
}

function numberWriter(dtype: SafetensorsDtype, view: DataView): (i: number, v: number) => void {
  switch (dtype) {
    case 'F64':
      return (i, v) => view.setFloat64(i * 8, v, true);
    case 'F32':
      return (i, v) => view.setFloat32(i * 4, v, true);
    case 'F16':
      return (i, v) => view.setUint16(i * 2, float32ToFloat16Bits(v), true);
    case 'BF16':
      return (i, v) => view.setUint16(i * 2, float32ToBFloat16Bits(v), true);
    case 'I32':
      return (i, v) => view.setInt32(i * 4, v, true);
    case 'I16':
      return (i, v) => view.setInt16(i * 2, v, true);
    case 'I8':
      return (i, v) => view.setInt8(i, v);
    case 'U8':
    case 'BOOL':
      return (i, v) => view.setUint8(i, v);
    case 'I64':
      return (i, v) => view.setBigInt64(i * 8, BigInt(v), true);
  }
}

function numberReader(dtype: SafetensorsDtype, view: DataView, where: string): (i: number) => number {
  switch (dtype) {
    case 'F64':
      return (i) => view.getFloat64(i * 8, true);
    case 'F32':
      return (i) => view.getFloat32(i * 4, true);
    case 'F16':
      return (i) => float16BitsToFloat32(view.getUint16(i * 2, true));
    case 'BF16':
      return (i) => bfloat16BitsToFloat32(view.getUint16(i * 2, true));
    // Number() rounds to the nearest double; beyond 2^53 (and 2^24 for float32 output) values are approximate.
    case 'I64':
      return (i) => Number(view.getBigInt64(i * 8, true));
    case 'I32':
      return (i) => view.getInt32(i * 4, true);
    case 'I16':
      return (i) => view.getInt16(i * 2, true);
    case 'I8':
      return (i) => view.getInt8(i);
    case 'U8':
      return (i) => view.getUint8(i);
    case 'BOOL':
      throw new SafetensorsError(`${where}: BOOL tensors have no numeric value to convert`);
  }
}

function toFloats<T extends Float32Array | Float64Array>(t: SafeTensor, where: string, make: (n: number) => T, sameDtype: SafetensorsDtype): T {
  const size = checkTensor(t, where);
  const count = size / ITEM_SIZE[t.dtype];
  if (t.dtype === sameDtype && HOST_IS_LITTLE_ENDIAN) {
    // Copying the bytes into a fresh array sidesteps the alignment a typed view over `data` would need.
    const out = make(count);
    new Uint8Array(out.buffer).set(t.data);
    return out;
  }
  const read = numberReader(t.dtype, new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength), where);
  const out = make(count);
  for (let i = 0; i < count; i++) out[i] = read(i);
  return out;
}

/** Values as a new Float32Array (F64 and large integers are rounded to nearest); errors for BOOL. */
export function toFloat32(t: SafeTensor): Float32Array {
  return toFloats(t, 'toFloat32', (n) => new Float32Array(n), 'F32');
}

/** Values as a new Float64Array (exact for every dtype except I64 beyond 2^53); errors for BOOL. */
export function toFloat64(t: SafeTensor): Float64Array {
  return toFloats(t, 'toFloat64', (n) => new Float64Array(n), 'F64');
}
