// Counter-based randomness (DESIGN.md §3): every random number is a pure function of a key such as
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

/** murmur3 (x86, 32-bit) over the UTF-16 code units of `text`. */
function murmur32(text: string, seed: number): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  for (let i = 0; i < text.length; i++) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return fmix32(h ^ text.length);
}

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
  const hi = murmur32(text, 0x9e3779b9);
  const lo = murmur32(text, 0x7f4a7c15);
  return ((hi >>> 5) * 67108864 + (lo >>> 6)) / 9007199254740992;
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
