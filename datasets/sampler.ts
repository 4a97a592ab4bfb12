// A resumable deterministic sampler over the current training subset: its whole state is a small JSON cursor that
// goes into every checkpoint, and the epoch orders are pure functions of the seed, so a restore continues exactly.
import { uniform } from '../dro/random.js';

/**
 * The sampler's entire state. `position` is how many ids of epoch `epoch`'s order (for subset version
 * `subsetVersion`) were already drawn; it is always in [0, subset length), because finishing an epoch moves the
 * cursor to position 0 of the next one.
 */
export interface SamplerCursor {
  subsetVersion: number;
  epoch: number;
  position: number;
  seed: number;
}

/** Thrown for an unusable subset, cursor or batch size; the message names the offending field. */
export class SamplerError extends Error {
  override readonly name = 'SamplerError';
}

const CURSOR_FIELDS = ['subsetVersion', 'epoch', 'position', 'seed'] as const;

/** The cursor a fresh run starts from. */
export function initialCursor(seed: number): SamplerCursor {
  return { subsetVersion: 0, epoch: 0, position: 0, seed };
}

function checkSubset(subset: readonly string[]): void {
  if (!Array.isArray(subset)) throw new SamplerError('sampler subset must be an array of example ids');
  if (subset.length === 0) throw new SamplerError('sampler subset must not be empty');
  const seen = new Set<string>();
  for (const id of subset) {
    if (typeof id !== 'string' || id === '') throw new SamplerError(`sampler subset ids must be non-empty strings, got ${JSON.stringify(id)}`);
    if (seen.has(id)) throw new SamplerError(`sampler subset has the duplicate id ${JSON.stringify(id)}`);
    seen.add(id);
  }
}

/** Checks a cursor (e.g. one parsed from a checkpoint) against a subset of `subsetLength` ids and returns a copy. */
export function checkCursor(cursor: unknown, subsetLength: number): SamplerCursor {
  if (typeof cursor !== 'object' || cursor === null || Array.isArray(cursor)) throw new SamplerError('sampler cursor must be an object');
  const record = cursor as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(CURSOR_FIELDS as readonly string[]).includes(key)) throw new SamplerError(`sampler cursor field ${key} is unknown`);
  }
  const field = (name: (typeof CURSOR_FIELDS)[number], min: number, max: number): number => {
    const value = record[name];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new SamplerError(`sampler cursor field ${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
    }
    return value;
  };
  return {
    subsetVersion: field('subsetVersion', 0, Number.MAX_SAFE_INTEGER),
    epoch: field('epoch', 0, Number.MAX_SAFE_INTEGER),
    position: field('position', 0, subsetLength - 1),
    seed: field('seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  };
}

/**
 * The order of epoch `epoch` for subset version `subsetVersion`: the ids sorted by
 * uniform([seed, 'epoch-order', subsetVersion, epoch, id]) (ties, practically impossible, by id). A pure function
 * of those values and the set of ids, so the order the ids are passed in does not matter.
 */
export function epochOrder(subset: readonly string[], seed: number, subsetVersion: number, epoch: number): string[] {
  return subset
    .map((id) => ({ id, u: uniform([seed, 'epoch-order', subsetVersion, epoch, id]) }))
    .sort((p, q) => p.u - q.u || (p.id < q.id ? -1 : p.id > q.id ? 1 : 0))
    .map((k) => k.id);
}

/**
 * Draws batches of example ids epoch by epoch.
 *
 * - Each epoch visits every id of the subset exactly once, in epochOrder(subset, seed, subsetVersion, epoch).
 * - A batch may span the end of an epoch: it takes the rest of epoch e, then continues from the start of epoch
 *   e + 1's order (a batch larger than the subset spans several epochs and so repeats ids, across epochs only).
 * - `new DataSampler(subset, sampler.cursor)` (even through JSON) continues with exactly the next batch.
 * - withSubset (a filtering round) ends the current epoch early: if it had started (position > 0), the new
 *   sampler begins epoch e + 1 at position 0; if it had not (position 0), epoch e itself starts afresh. Either way
 *   the new subset is drawn in the new version's order, each id exactly once per epoch; the cut-short epoch drew no
 *   id twice. The undrawn rest of the cut-short epoch is not carried over: the cursor alone could not say which ids
 *   of the new subset were already drawn, and a restore must not need the old subset.
 */
export class DataSampler {
  readonly #subset: readonly string[];
  #cursor: SamplerCursor;
  #order: string[] | undefined;

  constructor(subset: readonly string[], cursor: SamplerCursor) {
    checkSubset(subset);
    this.#cursor = checkCursor(cursor, subset.length);
    // Sorted so nothing downstream can depend on the caller's order.
    this.#subset = Object.freeze([...subset].sort());
  }

  /** The ids in the current subset (sorted). */
  get subset(): readonly string[] {
    return this.#subset;
  }

  /** A copy of the state to store in a checkpoint. */
  get cursor(): SamplerCursor {
    return { ...this.#cursor };
  }

  /** The next `size` ids (size an integer >= 1), advancing the cursor. */
  nextBatch(size: number): string[] {
    if (!Number.isSafeInteger(size) || size < 1) throw new SamplerError(`batch size must be an integer >= 1, got ${size}`);
    const batch: string[] = [];
    while (batch.length < size) {
      const order = this.#currentOrder();
      const take = Math.min(size - batch.length, order.length - this.#cursor.position);
      batch.push(...order.slice(this.#cursor.position, this.#cursor.position + take));
      const position = this.#cursor.position + take;
      if (position === order.length) {
        this.#cursor = { ...this.#cursor, epoch: this.#cursor.epoch + 1, position: 0 };
        this.#order = undefined;
      } else {
        this.#cursor = { ...this.#cursor, position };
      }
    }
    return batch;
  }

  /** A sampler over `newSubset` as subset version `newVersion` (> the current one); see the class comment. */
  withSubset(newSubset: readonly string[], newVersion: number): DataSampler {
    const { subsetVersion, epoch, position, seed } = this.#cursor;
    if (!Number.isSafeInteger(newVersion) || newVersion <= subsetVersion) {
      throw new SamplerError(`new subsetVersion must be an integer > the current ${subsetVersion}, got ${newVersion}`);
    }
    return new DataSampler(newSubset, { subsetVersion: newVersion, epoch: position === 0 ? epoch : epoch + 1, position: 0, seed });
  }

  #currentOrder(): string[] {
    this.#order ??= epochOrder(this.#subset, this.#cursor.seed, this.#cursor.subsetVersion, this.#cursor.epoch);
    return this.#order;
  }
}
