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
  if (text.length > MAX_KEY_LENGTH) throw new InvalidKeyError(`${what} is longer than ${MAX_KEY_LENGTH} characters`);
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
  const last = segments[segments.length - 1];
  if (isPrefix && (last === '.' || last === '..')) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} has a '.' or '..' path segment`);
  }
  if (segments[0] === RESERVED_TOP_SEGMENT) {
    throw new InvalidKeyError(`${what} ${JSON.stringify(text)} uses the reserved folder ${RESERVED_TOP_SEGMENT}/`);
  }
}

/** Top-level folder the directory store uses for in-flight writes; no key may live there. */
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
