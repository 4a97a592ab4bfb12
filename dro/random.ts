// Counter-based randomness (docs/architecture.md, "Runtime picture": determinism): every random number is a pure function of a key such as
// (runSeed, step, exampleId, sampleIndex, purpose). No generator state exists, so results do not depend
// on batching, retries, or which worker computes them. Not cryptographic.

export type RandomKey = readonly (string | number)[];

/** murmur3's 32-bit finaliser: a bijection with good avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** One murmur3 (x86, 32-bit) round: mixes the word k into the state h. */
function mixWord(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3 (x86, 32-bit) over the UTF-16 code units of `text`. */
function murmur32(text: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) h = mixWord(h, text.charCodeAt(i));
  return fmix32(h ^ text.length);
}

/** 53 random bits from two 32-bit hashes, as a number in [0, 1). */
const toUnit = (hi: number, lo: number): number => ((hi >>> 5) * 67108864 + (lo >>> 6)) / 9007199254740992;

function encodeKey(key: RandomKey): string {
  for (const part of key) {
    if (typeof part === 'number' && !Number.isFinite(part)) throw new Error(`random key part must be finite, got ${part}`);
    if (typeof part !== 'number' && typeof part !== 'string') throw new Error(`random key parts must be strings or numbers, got ${typeof part}`);
  }
  // JSON keeps ["1", 2] and [1, "2"] apart, and "a,b" apart from ["a", "b"].
  return JSON.stringify(key);
}

/** A uniform number in [0, 1) with 53 random bits, determined by `key` alone. */
export function uniform(key: RandomKey): number {
  const text = encodeKey(key);
  return toUnit(murmur32(text, 0x9e3779b9), murmur32(text, 0x7f4a7c15));
}

/**
 * A fast keyed stream for bulk draws (weight init, per-token sampling): `key` is hashed once, and
 * `at(index, lane)` hashes only two 32-bit words, yet is still a pure function of (key, index, lane).
 * Index and lane must be integers in [0, 2^32).
 */
export function uniformStream(key: RandomKey): (index: number, lane?: number) => number {
  const hiSeed = murmur32(encodeKey([...key, 'stream-hi']), 0x9e3779b9);
  const loSeed = murmur32(encodeKey([...key, 'stream-lo']), 0x7f4a7c15);
  return (index, lane = 0) => toUnit(fmix32(mixWord(mixWord(hiSeed, index), lane) ^ 8), fmix32(mixWord(mixWord(loSeed, index), lane) ^ 8));
}

/**
 * `count` items of `items` chosen without replacement, by ordering them on uniform([...key, id]).
 * Independent of the order of `items`: the same ids and key always give the same choice.
 */
export function chooseDeterministic(items: readonly string[], count: number, key: RandomKey): string[] {
  if (!Number.isInteger(count) || count < 0) throw new Error(`count must be a non-negative integer, got ${count}`);
  const keyed = [...new Set(items)].map((id) => ({ id, u: uniform([...key, id]) }));
  keyed.sort((a, b) => a.u - b.u || (a.id < b.id ? -1 : 1));
  return keyed.slice(0, count).map((k) => k.id);
}
