// The behaviour every BlobStore must have, as one suite run against each implementation
// (storage/dir-store.test.ts on a temp directory, test/s3-store.test.ts on the real SeaweedFS).
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobNotFoundError, InvalidKeyError, readAll, type BlobStore } from '../storage/blob-store.js';

export interface SuiteContext {
  store: BlobStore;
}

const MiB = 1024 * 1024;

/** Deterministic bytes that differ at every position (so a misplaced chunk changes the hash). */
export function patternBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
    if (i + 1 < size) out[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < size) out[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < size) out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Streams `data` in uneven chunks, the way a socket or file would deliver it. */
function chunked(data: Uint8Array, chunk = 3 * MiB + 17): Readable {
  return Readable.from(
    (function* () {
      for (let off = 0; off < data.byteLength; off += chunk) yield data.subarray(off, Math.min(off + chunk, data.byteLength));
    })(),
  );
}

export function describeBlobStore(name: string, open: () => Promise<BlobStore>, extra?: (ctx: SuiteContext) => void): void {
  describe(`BlobStore contract: ${name}`, () => {
    const ctx = {} as SuiteContext;
    beforeAll(async () => {
      ctx.store = await open();
    });
    afterAll(async () => {
      await ctx.store?.close();
    });

    it('round-trips bytes, overwrites, and stores empty objects', async () => {
      const { store } = ctx;
      const data = patternBytes(1000, 1);
      await store.put('a/b/c.bin', data);
      expect(sha256(await store.get('a/b/c.bin'))).toBe(sha256(data));
      const replaced = patternBytes(10, 2);
      await store.put('a/b/c.bin', replaced);
      expect(Array.from(await store.get('a/b/c.bin'))).toEqual(Array.from(replaced));
      await store.put('empty', new Uint8Array(0));
      expect((await store.get('empty')).byteLength).toBe(0);
      expect(await store.exists('empty')).toBe(true);
    });

    it('reports a missing object as BlobNotFoundError from get and getStream, and false from exists', async () => {
      const { store } = ctx;
      await expect(store.get('missing/x')).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.getStream('missing/x')).rejects.toBeInstanceOf(BlobNotFoundError);
      expect(await store.exists('missing/x')).toBe(false);
    });

    it('lists by plain string prefix, sorted, with sizes, and nothing outside the prefix', async () => {
      const { store } = ctx;
      await store.put('list/b/2', patternBytes(2, 3));
      await store.put('list/b/1', patternBytes(1, 3));
      await store.put('list/bc/3', patternBytes(3, 3));
      await store.put('list/a', patternBytes(4, 3));
      await store.put('listing-other', patternBytes(5, 3));
      expect(await store.list('list/')).toEqual([
        { key: 'list/a', bytes: 4 },
        { key: 'list/b/1', bytes: 1 },
        { key: 'list/b/2', bytes: 2 },
        { key: 'list/bc/3', bytes: 3 },
      ]);
      expect((await store.list('list/b')).map((b) => b.key)).toEqual(['list/b/1', 'list/b/2', 'list/bc/3']);
      expect((await store.list('list/b/')).map((b) => b.key)).toEqual(['list/b/1', 'list/b/2']);
      expect(await store.list('nothing-here/')).toEqual([]);
      const all = (await store.list('')).map((b) => b.key);
      expect(all).toContain('listing-other');
      expect(all).toContain('list/bc/3');
    });

    it('deletes objects, and deleting a missing object is not an error', async () => {
      const { store } = ctx;
      await store.put('del/x', patternBytes(8, 4));
      await store.delete('del/x');
      expect(await store.exists('del/x')).toBe(false);
      await store.delete('del/x');
      expect(await store.list('del/')).toEqual([]);
    });

    it('rejects keys that could escape the store', async () => {
      const { store } = ctx;
      for (const key of ['../x', 'a/../../x', '/abs', 'a//b', 'a/./b', '', 'back\\slash', '.partial/x', 'nul\u0000']) {
        await expect(store.put(key, new Uint8Array(1)), key).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.get(key), key).rejects.toBeInstanceOf(InvalidKeyError);
      }
      await expect(store.list('../')).rejects.toBeInstanceOf(InvalidKeyError);
    });

    it('keeps one key contract: lone surrogates and over-long keys (in UTF-8 bytes) refused, names starting with dots kept', async () => {
      const { store } = ctx;
      // Two different lone surrogates would alias one file on disk (both become U+FFFD).
      for (const key of ['lone/\uD800', 'lone/\uDC01', 'lone/a\uD83Dz', '.dro-partial.1.2.3', 'x/.dro-partial.9']) {
        await expect(store.put(key, new Uint8Array(1)), JSON.stringify(key)).rejects.toBeInstanceOf(InvalidKeyError);
      }
      // Five segments of 80 three-byte characters are 1204 bytes: refused although only 404 characters long.
      const segment = '€'.repeat(80);
      await expect(store.put(`long/${Array(5).fill(segment).join('/')}`, new Uint8Array(1))).rejects.toThrow(/longer than 1024 UTF-8 bytes/);
      await expect(store.put(`long/${'€'.repeat(86)}`, new Uint8Array(1))).rejects.toThrow(/segment longer than 255 UTF-8 bytes/);
      const fits = `long/${Array(4).fill(segment).join('/')}`;
      await store.put(fits, new Uint8Array([1]));
      expect(Array.from(await store.get(fits))).toEqual([1]);
      // A name that merely starts with dots is a name, on every store; so is a paired surrogate (an emoji).
      for (const key of ['dots/..hidden', 'dots/...', 'dots/.x', 'emoji/\uD83D\uDE00']) {
        await store.put(key, new Uint8Array([2]));
        expect(Array.from(await store.get(key)), key).toEqual([2]);
      }
      expect((await store.list('dots/')).map((b) => b.key)).toEqual(['dots/...', 'dots/..hidden', 'dots/.x']);
    });

    it('streams a 64 MiB object in and out with an equal sha256', async () => {
      const { store } = ctx;
      const data = patternBytes(64 * MiB, 5);
      const { bytes } = await store.putStream('big/stream.bin', chunked(data));
      expect(bytes).toBe(data.byteLength);
      const stream = await store.getStream('big/stream.bin');
      const hash = createHash('sha256');
      let total = 0;
      for await (const chunk of stream) {
        hash.update(chunk as Uint8Array);
        total += (chunk as Uint8Array).byteLength;
      }
      expect(total).toBe(data.byteLength);
      expect(hash.digest('hex')).toBe(sha256(data));
      expect((await store.list('big/')).find((b) => b.key === 'big/stream.bin')?.bytes).toBe(data.byteLength);
    });

    it('writes a large buffer with put and reads it back whole', async () => {
      const { store } = ctx;
      const data = patternBytes(20 * MiB + 3, 6);
      await store.put('big/put.bin', data);
      const back = await store.get('big/put.bin');
      expect(back.byteLength).toBe(data.byteLength);
      expect(sha256(back)).toBe(sha256(data));
    });

    it('never shows a reader half of an object being overwritten', async () => {
      const { store } = ctx;
      const versions = [patternBytes(6 * MiB, 7), patternBytes(6 * MiB, 8)];
      const hashes = new Set(versions.map(sha256));
      await store.put('race/obj', versions[0]!);
      let writing = true;
      const writer = (async () => {
        for (let i = 1; i <= 6; i++) await store.put('race/obj', versions[i % 2]!);
        writing = false;
      })();
      let reads = 0;
      while (writing) {
        const seen = await store.get('race/obj');
        expect(hashes.has(sha256(seen))).toBe(true);
        reads++;
      }
      await writer;
      expect(reads).toBeGreaterThan(0);
    });

    it('honours an AbortSignal: an aborted streaming write leaves no object behind', async () => {
      const { store } = ctx;
      await expect(store.put('abort/pre', new Uint8Array(4), { signal: AbortSignal.abort() })).rejects.toThrow();
      expect(await store.exists('abort/pre')).toBe(false);
      const controller = new AbortController();
      const source = Readable.from(
        (async function* () {
          for (let i = 0; i < 64; i++) {
            if (i === 3) controller.abort(new Error('stop now'));
            yield randomBytes(MiB);
            await new Promise((r) => setTimeout(r, 5));
          }
        })(),
      );
      await expect(store.putStream('abort/stream', source, { signal: controller.signal })).rejects.toThrow();
      expect(await store.exists('abort/stream')).toBe(false);
      expect((await store.list('abort/')).length).toBe(0);
    });

    it('putIfAbsent creates a missing key once: of concurrent callers exactly one wins, and the winner\'s bytes stay', async () => {
      const s = ctx.store;
      expect(await s.putIfAbsent('once/a', patternBytes(10, 1))).toBe(true);
      expect(await s.putIfAbsent('once/a', patternBytes(10, 2))).toBe(false);
      expect(Buffer.from(await s.get('once/a')).equals(Buffer.from(patternBytes(10, 1)))).toBe(true);
      for (let trial = 0; trial < 10; trial++) {
        const key = `once/race-${trial}`;
        const results = await Promise.all([0, 1, 2, 3].map((i) => s.putIfAbsent(key, patternBytes(1000, 10 + i))));
        expect(results.filter(Boolean).length, `trial ${trial}`).toBe(1);
        const winner = results.indexOf(true);
        expect(Buffer.from(await s.get(key)).equals(Buffer.from(patternBytes(1000, 10 + winner))), `trial ${trial}`).toBe(true);
      }
    });

    it('readAll collects a stream from the store', async () => {
      const { store } = ctx;
      const data = patternBytes(300_000, 9);
      await store.put('readall/x', data);
      expect(sha256(await readAll(await store.getStream('readall/x')))).toBe(sha256(data));
    });

    extra?.(ctx);
  });
}
