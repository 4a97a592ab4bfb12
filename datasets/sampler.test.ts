// The resumable sampler: determinism, exact continuation across 1,000 JSON round-tripped restores, per-epoch
// coverage, the filtering-round (subset change) rule, input-order independence and validation.
import { describe, expect, it } from 'vitest';
import { uniform } from '../dro/random.js';
import { DataSampler, epochOrder, initialCursor, SamplerError } from './sampler.js';
import type { SamplerCursor } from './sampler.js';

const ids = (n: number, prefix = 'ex'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Batch sizes from 1 to 2·n + 1 keyed by the batch index, so some batches span two or three epochs. */
const sizeAt = (i: number, n: number): number => 1 + Math.floor(uniform(['sampler-test', 'size', i]) * (2 * n + 1));

function draw(sampler: DataSampler, sizes: readonly number[]): string[][] {
  return sizes.map((size) => sampler.nextBatch(size));
}

describe('DataSampler determinism', () => {
  it('gives the same batches for the same subset and cursor', () => {
    const sizes = [3, 7, 1, 20, 5];
    const a = draw(new DataSampler(ids(13), initialCursor(5)), sizes);
    const b = draw(new DataSampler(ids(13), initialCursor(5)), sizes);
    expect(a).toEqual(b);
    expect(a.map((batch) => batch.length)).toEqual(sizes);
  });

  it('depends on the seed', () => {
    const a = new DataSampler(ids(30), initialCursor(1)).nextBatch(30);
    const b = new DataSampler(ids(30), initialCursor(2)).nextBatch(30);
    expect(a).not.toEqual(b);
    expect([...a].sort()).toEqual([...b].sort());
  });

  it('follows the documented epoch order and carries a batch over the epoch end', () => {
    const subset = ids(5);
    const sampler = new DataSampler(subset, initialCursor(9));
    const e0 = epochOrder(subset, 9, 0, 0);
    const e1 = epochOrder(subset, 9, 0, 1);
    expect(sampler.nextBatch(3)).toEqual(e0.slice(0, 3));
    expect(sampler.cursor).toEqual({ subsetVersion: 0, epoch: 0, position: 3, seed: 9 });
    expect(sampler.nextBatch(4)).toEqual([...e0.slice(3), ...e1.slice(0, 2)]);
    expect(sampler.cursor).toEqual({ subsetVersion: 0, epoch: 1, position: 2, seed: 9 });
    expect(sampler.nextBatch(3)).toEqual(e1.slice(2));
    // Finishing an epoch exactly moves the cursor to the next epoch's start.
    expect(sampler.cursor).toEqual({ subsetVersion: 0, epoch: 2, position: 0, seed: 9 });
  });

  it('keys the order on uniform([seed, "epoch-order", version, epoch, id])', () => {
    const subset = ids(8);
    const byKey = [...subset].sort((p, q) => uniform([3, 'epoch-order', 2, 4, p]) - uniform([3, 'epoch-order', 2, 4, q]));
    expect(epochOrder(subset, 3, 2, 4)).toEqual(byKey);
    expect(epochOrder(subset, 3, 2, 5)).not.toEqual(byKey);
    expect(epochOrder(subset, 3, 1, 4)).not.toEqual(byKey);
  });
});

describe('restoring a cursor', () => {
  it('reproduces the uninterrupted batches exactly at 1,000 random interrupt points', () => {
    const subset = ids(17);
    const later = [...ids(11), ...ids(9, 'new')];
    const batches = 4000;
    const changeAt = 1500; // a filtering round in the middle, in both runs
    const sizes = Array.from({ length: batches }, (_, i) => sizeAt(i, subset.length));

    const reference: string[][] = [];
    let straight = new DataSampler(subset, initialCursor(42));
    for (let i = 0; i < batches; i++) {
      if (i === changeAt) straight = straight.withSubset(later, 1);
      reference.push(straight.nextBatch(sizes[i] ?? 1));
    }

    // 1,000 distinct interrupt points chosen by uniform.
    const interrupts = new Set<number>();
    for (let k = 0; interrupts.size < 1000; k++) interrupts.add(Math.floor(uniform(['sampler-test', 'interrupt', k]) * batches));

    const resumed: string[][] = [];
    let current = subset;
    let sampler = new DataSampler(current, initialCursor(42));
    for (let i = 0; i < batches; i++) {
      if (i === changeAt) {
        sampler = sampler.withSubset(later, 1);
        current = later;
      }
      if (interrupts.has(i)) {
        const stored = JSON.stringify(sampler.cursor);
        // A restarted process sees the subset in whatever order it loaded it.
        sampler = new DataSampler([...current].reverse(), JSON.parse(stored) as SamplerCursor);
      }
      resumed.push(sampler.nextBatch(sizes[i] ?? 1));
    }
    expect(interrupts.size).toBe(1000);
    expect(resumed).toEqual(reference);
  });

  it('continues with exactly the next batch', () => {
    const sampler = new DataSampler(ids(10), initialCursor(0));
    sampler.nextBatch(4);
    const copy = new DataSampler(ids(10), JSON.parse(JSON.stringify(sampler.cursor)) as SamplerCursor);
    expect(copy.nextBatch(9)).toEqual(sampler.nextBatch(9));
    expect(copy.cursor).toEqual(sampler.cursor);
  });

  it('returns cursor copies that cannot change the sampler', () => {
    const sampler = new DataSampler(ids(10), initialCursor(0));
    const cursor = sampler.cursor;
    cursor.position = 7;
    expect(sampler.cursor.position).toBe(0);
  });
});

describe('epoch coverage', () => {
  it('draws every id exactly once per epoch, whatever the batch sizes', () => {
    const subset = ids(23);
    const sampler = new DataSampler(subset, initialCursor(7));
    const flat = draw(sampler, Array.from({ length: 200 }, (_, i) => sizeAt(i, 23))).flat();
    const epochs = Math.floor(flat.length / subset.length);
    expect(epochs).toBeGreaterThan(10);
    for (let e = 0; e < epochs; e++) {
      const epoch = flat.slice(e * subset.length, (e + 1) * subset.length);
      expect([...epoch].sort()).toEqual([...subset].sort());
      expect(epoch).toEqual(epochOrder(subset, 7, 0, e));
    }
  });

  it('shuffles epochs differently', () => {
    const subset = ids(40);
    expect(epochOrder(subset, 1, 0, 0)).not.toEqual(epochOrder(subset, 1, 0, 1));
  });
});

describe('subset changes (filtering rounds)', () => {
  it('mid-epoch: ends the epoch and starts epoch e + 1 of the new version, each new id once', () => {
    const old = ids(12);
    const next = [...ids(6), ...ids(5, 'fresh')];
    const sampler = new DataSampler(old, initialCursor(3));
    const drawn = sampler.nextBatch(5);
    expect(new Set(drawn).size).toBe(5); // the cut-short epoch repeats nothing
    const changed = sampler.withSubset(next, 1);
    expect(changed.cursor).toEqual({ subsetVersion: 1, epoch: 1, position: 0, seed: 3 });
    const epoch = [...changed.nextBatch(4), ...changed.nextBatch(7)];
    expect(epoch).toEqual(epochOrder(next, 3, 1, 1));
    expect([...epoch].sort()).toEqual([...next].sort());
    expect(changed.cursor).toEqual({ subsetVersion: 1, epoch: 2, position: 0, seed: 3 });
    // The old sampler is unaffected.
    expect(sampler.cursor).toEqual({ subsetVersion: 0, epoch: 0, position: 5, seed: 3 });
  });

  it('at an epoch boundary: the same epoch number starts afresh with the new version', () => {
    const sampler = new DataSampler(ids(6), initialCursor(3));
    sampler.nextBatch(6);
    const changed = sampler.withSubset(ids(4), 2);
    expect(changed.cursor).toEqual({ subsetVersion: 2, epoch: 1, position: 0, seed: 3 });
    expect(changed.nextBatch(4)).toEqual(epochOrder(ids(4), 3, 2, 1));
  });

  it('never repeats or skips an id within any epoch across several rounds', () => {
    let subset = ids(30);
    let sampler = new DataSampler(subset, initialCursor(11));
    let epochDraws = new Map<number, string[]>();
    for (let round = 1; round <= 5; round++) {
      for (let i = 0; i < 8; i++) {
        const before = sampler.cursor;
        const batch = sampler.nextBatch(sizeAt(round * 100 + i, 10));
        // Split the batch by epoch: the rest of `before.epoch`, then whole or partial later epochs.
        let epoch = before.epoch;
        let left = subset.length - before.position;
        for (const id of batch) {
          if (left === 0) {
            epoch++;
            left = subset.length;
          }
          epochDraws.set(epoch, [...(epochDraws.get(epoch) ?? []), id]);
          left--;
        }
      }
      const current = sampler.cursor;
      for (const [epoch, drawn] of epochDraws) {
        expect(new Set(drawn).size).toBe(drawn.length); // no repeats
        if (epoch < current.epoch) expect([...drawn].sort()).toEqual([...subset].sort()); // no skips in finished epochs
      }
      subset = chooseSome(ids(30), round);
      sampler = sampler.withSubset(subset, round);
      epochDraws = new Map();
    }
  });
});

/** A keyed subset of about 60% of `all`. */
function chooseSome(all: string[], round: number): string[] {
  return all.filter((id) => uniform(['sampler-test', 'keep', round, id]) < 0.6).slice(0, 29);
}

describe('input-order independence', () => {
  it('gives the same batches for any order of the same ids', () => {
    const subset = ids(25);
    const shuffled = [...subset].sort((p, q) => uniform(['shuffle', p]) - uniform(['shuffle', q]));
    const sizes = [4, 9, 30, 2, 11];
    expect(draw(new DataSampler(shuffled, initialCursor(8)), sizes)).toEqual(draw(new DataSampler(subset, initialCursor(8)), sizes));
    expect(draw(new DataSampler([...subset].reverse(), initialCursor(8)), sizes)).toEqual(draw(new DataSampler(subset, initialCursor(8)), sizes));
  });
});

describe('validation', () => {
  const ok = initialCursor(0);
  const bad = (fn: () => unknown, message: RegExp): void => {
    expect(fn).toThrow(SamplerError);
    expect(fn).toThrow(message);
  };

  it('rejects an empty subset and duplicate or empty ids', () => {
    bad(() => new DataSampler([], ok), /subset must not be empty/);
    bad(() => new DataSampler(['a', 'b', 'a'], ok), /duplicate id "a"/);
    bad(() => new DataSampler(['a', ''], ok), /non-empty strings/);
    bad(() => new DataSampler(['a', 3 as unknown as string], ok), /non-empty strings/);
  });

  it('rejects bad cursor fields by name', () => {
    const subset = ids(4);
    bad(() => new DataSampler(subset, { ...ok, position: 4 }), /field position/);
    bad(() => new DataSampler(subset, { ...ok, position: -1 }), /field position/);
    bad(() => new DataSampler(subset, { ...ok, epoch: 1.5 }), /field epoch/);
    bad(() => new DataSampler(subset, { ...ok, subsetVersion: -2 }), /field subsetVersion/);
    bad(() => new DataSampler(subset, { ...ok, seed: Number.NaN }), /field seed/);
    bad(() => new DataSampler(subset, { ...ok, seed: '1' as unknown as number }), /field seed/);
    const { epoch: _epoch, ...missing } = ok;
    bad(() => new DataSampler(subset, missing as SamplerCursor), /field epoch/);
    bad(() => new DataSampler(subset, { ...ok, extra: 1 } as SamplerCursor), /field extra is unknown/);
    bad(() => new DataSampler(subset, null as unknown as SamplerCursor), /cursor must be an object/);
  });

  it('rejects bad batch sizes and non-increasing subset versions', () => {
    const sampler = new DataSampler(ids(4), { ...ok, subsetVersion: 2 });
    bad(() => sampler.nextBatch(0), /batch size/);
    bad(() => sampler.nextBatch(2.5), /batch size/);
    bad(() => sampler.withSubset(ids(3), 2), /subsetVersion must be an integer > the current 2/);
    bad(() => sampler.withSubset([], 3), /subset must not be empty/);
  });
});
