// The blob store interface every storage backend implements, its errors, and the key rules they share.
// Keys are '/'-separated relative names; validation here is what keeps a key from escaping its store.
import type { Readable } from 'node:stream';

export interface OpOptions {
  /** Aborts the operation; the returned promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface BlobInfo {
  key: string;
  bytes: number;
}

export type BlobSource = AsyncIterable<Uint8Array> | Readable;

export interface BlobStore {
  /** Where the store points, printable: never contains credentials. */
  readonly location: string;
  /** Writes a whole object; readers see either the old object or the new one, never a part. */
  put(key: string, data: Uint8Array, opts?: OpOptions): Promise<void>;
  /** Writes a large object from a stream without holding it in memory; same visibility rule as put. */
  putStream(key: string, source: BlobSource, opts?: OpOptions): Promise<{ bytes: number }>;
  /**
   * Writes a small object only if no object has the key: true when this call created it, false when the
   * key existed (its object unchanged). Of concurrent callers exactly one gets true. Same visibility rule as put.
   */
  putIfAbsent(key: string, data: Uint8Array, opts?: OpOptions): Promise<boolean>;
  /** Reads a whole object; BlobNotFoundError when it does not exist. */
  get(key: string, opts?: OpOptions): Promise<Uint8Array>;
  /** Opens an object for streaming; BlobNotFoundError (raised before any data) when it does not exist. */
  getStream(key: string, opts?: OpOptions): Promise<Readable>;
  /** Every object whose key starts with `prefix` (a plain string prefix), sorted by key. */
  list(prefix: string, opts?: OpOptions): Promise<BlobInfo[]>;
  /** Removes an object; removing a missing object is not an error. */
  delete(key: string, opts?: OpOptions): Promise<void>;
  exists(key: string, opts?: OpOptions): Promise<boolean>;
  /** Releases connections; the store must not be used afterwards. */
  close(): Promise<void>;
}

export class BlobNotFoundError extends Error {
  override readonly name = 'BlobNotFoundError';
  constructor(
    readonly location: string,
    readonly key: string,
  ) {
    super(`blob not found: ${key} in ${location}`);
  }
}

/** Raised for a key or prefix that could address something outside the store. */
export class InvalidKeyError extends Error {
  override readonly name = 'InvalidKeyError';
}

export const MAX_KEY_LENGTH = 1024;
export const MAX_SEGMENT_LENGTH = 255;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const encoder = new TextEncoder();
export const utf8Length = (text: string): number => encoder.encode(text).byteLength;

/** Throws InvalidKeyError unless `key` is a safe relative object key. */
export function validateKey(key: string, what = 'key'): void {
  validateKeyText(key, what, false);
}

/** Like validateKey, but a prefix may be empty and may end in '/' or in a partial segment. */
export function validatePrefix(prefix: string): void {
  validateKeyText(prefix, 'prefix', true);
}

function validateKeyText(text: string, what: string, isPrefix: boolean): void {
  if (typeof text !== 'string') throw new InvalidKeyError(`${what} must be a string, got ${typeof text}`);
  if (text.length === 0) {
    if (isPrefix) return;
    throw new InvalidKeyError(`${what} is empty`);
  }
  // S3's limit, in UTF-8 bytes, for both stores: a key that works on one works on the other.
  if (utf8Length(text) > MAX_KEY_LENGTH) throw new InvalidKeyError(`${what} is longer than ${MAX_KEY_LENGTH} UTF-8 bytes`);
  // A lone surrogate has no UTF-8 form: two different such keys would name one file.
  if (LONE_SURROGATE.test(text)) throw new InvalidKeyError(`${what} ${JSON.stringify(text)} contains a lone UTF-16 surrogate (not valid Unicode)`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(text)) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} contains a control character or backslash`);
  }
  if (text.startsWith('/')) throw new InvalidKeyError(`${what} ${JSON.stringify(text)} must be relative (no leading '/')`);
  const segments = text.split('/');
  // A prefix may end with '/' (empty last segment); every other segment must be a real name.
  const checked = isPrefix ? segments.slice(0, -1) : segments;
  for (const segment of checked) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new InvalidKeyError(`${what} ${JSON.stringify(text)} has an empty, '.' or '..' path segment`);
    }
  }
  // A file name's limit on the filesystems a directory store lives on; S3 follows it too.
  const long = segments.find((s) => utf8Length(s) > MAX_SEGMENT_LENGTH);
  if (long !== undefined) throw new InvalidKeyError(`${what} has a path segment longer than ${MAX_SEGMENT_LENGTH} UTF-8 bytes`);
  const last = segments[segments.length - 1];
  if (isPrefix && (last === '.' || last === '..')) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} has a '.' or '..' path segment`);
  }
  if (segments[0] === RESERVED_TOP_SEGMENT) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} uses the reserved folder ${RESERVED_TOP_SEGMENT}/`);
  }
  if (segments.some((s) => s.startsWith(TEMP_PREFIX))) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} has a segment starting with ${TEMP_PREFIX}, reserved for in-flight writes`);
  }
}

/** Names the directory store gives its in-flight writes, next to their destination; no key segment may start so. */
export const TEMP_PREFIX = '.dro-partial.';

/** Top-level folder where older versions of the directory store staged writes; no key may live there. */
export const RESERVED_TOP_SEGMENT = '.partial';

/** Collects a stream or async iterable into one buffer (used where a whole object is needed). */
export async function readAll(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of source) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
