// The token sampler for rollouts: turns one logits row per decode step into the next token and its
// log-probability, drawing from a counter-based key per sequence so a chain never depends on its batch.
//
// Semantics (all arithmetic in float64):
// - temperature 0: greedy. The token with the largest logit, ties to the lowest id; top-k and top-p are
//   ignored and no random number is drawn. The log-prob is the log-softmax of the raw logits there.
// - temperature t > 0: weights w_i = exp((logit_i − max) / t); a −Infinity logit has weight 0 and is
//   never kept. Then, in this order:
//   · top-k (k > 0): keep the k largest logits, ties to the lower id.
//   · top-p (p < 1): rank the kept tokens by weight descending (ties to the lower id) and keep the
//     shortest prefix whose share of the kept mass (after top-k) reaches p, at least one token. A share
//     within 1e-12 of p counts as reaching it, so a boundary exact in real arithmetic survives rounding.
//   · renormalise: q_i = w_i / Σ_kept w.
//   · draw u = uniformStream([seed, step, exampleId, sampleIndex, 'sample'])(position), and choose the
//     first kept token in ASCENDING ID order whose cumulative q exceeds u (inverse CDF). The CDF is
//     taken in id order, not rank order, so the choice cannot depend on how a sort orders ties. Should
//     rounding leave the total just below u, the last kept token with positive weight is chosen.
//   The log-prob is log q_chosen, computed as (logit − max) / t − log Σ_kept w.
// - Inputs: NaN or +Infinity logits, a row of only −Infinity, or an empty row are errors naming the
//   position (and token). A sequence's rows must all have the vocabulary size of its first row.
// - Ending: a stop token ends the sequence first, then a stop sequence (generated ids ending with it),
//   then maxNewTokens; the ending token is kept. `truncated` is true only for the maxNewTokens ending.
import { uniformStream } from '../dro/random.js';
import { expNonPositive } from './exp.js';
import { assertKnownKeys, assertNumberIn } from '../dro/stats.js';
import { EngineInputError } from './errors.js';

export type LogitsRow = Float32Array | Float64Array | readonly number[];

export interface SamplingOptions {
  /** 0 = greedy (argmax, ties → lowest id). */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP: number;
  /** Keep only the k most likely tokens; 0 = off. */
  topK: number;
  maxNewTokens: number;
  /** Token ids that end a sequence (the end token is kept in the output). */
  stopTokenIds: number[];
  /** Token-id sequences that end a sequence when the generated ids end with one of them (kept in the output). */
  stopSequences: number[][];
}

// Every field is required (the run config owns the defaults, not the engine); any other key is refused by name.
const OPTION_KEYS: readonly (keyof SamplingOptions)[] = ['temperature', 'topP', 'topK', 'maxNewTokens', 'stopTokenIds', 'stopSequences'];
/** uniformStream takes indices in [0, 2^32), and the position is the index. */
const MAX_POSITION = 2 ** 32 - 1;
const TOP_P_SLACK = 1e-12;

// Array.isArray would narrow unknown to any[]; this keeps the element type honest.
const isArray = (value: unknown): value is readonly unknown[] => Array.isArray(value);

function tokenIds(value: unknown, what: string, opts: { nonEmpty?: boolean } = {}): number[] {
  if (!isArray(value)) throw new EngineInputError(`${what} must be an array of token ids, got ${JSON.stringify(value)}`);
  if (opts.nonEmpty && value.length === 0) throw new EngineInputError(`${what} is empty`);
  return value.map((id, i) => {
    assertNumberIn(id, `${what}[${i}]`, 0, Number.MAX_SAFE_INTEGER, { integer: true, error: EngineInputError });
    return id;
  });
}

/** Validates every field (each is required) and returns a copy. */
export function checkedSamplingOptions(o: SamplingOptions): SamplingOptions {
  const raw: unknown = o;
  if (typeof raw !== 'object' || raw === null || isArray(raw)) throw new EngineInputError('sampling options must be an object');
  assertKnownKeys(o, OPTION_KEYS, 'sampling', EngineInputError);
  const { temperature, topP, topK, maxNewTokens } = o;
  assertNumberIn(temperature, 'sampling option temperature', 0, Infinity, { error: EngineInputError });
  assertNumberIn(topP, 'sampling option topP', 0, 1, { minExclusive: true, error: EngineInputError });
  assertNumberIn(topK, 'sampling option topK', 0, Number.MAX_SAFE_INTEGER, { integer: true, error: EngineInputError });
  assertNumberIn(maxNewTokens, 'sampling option maxNewTokens', 1, MAX_POSITION + 1, { integer: true, error: EngineInputError });
  // Copies, so a caller mutating its arrays later cannot change a running sampler.
  const stopTokenIds = tokenIds(o.stopTokenIds, 'sampling option stopTokenIds');
  const rawSequences: unknown = o.stopSequences;
  if (!isArray(rawSequences)) throw new EngineInputError(`sampling option stopSequences must be an array of token-id arrays, got ${JSON.stringify(rawSequences)}`);
  const stopSequences = rawSequences.map((s, i) => tokenIds(s, `sampling option stopSequences[${i}]`, { nonEmpty: true }));
  return { temperature, topP, topK, maxNewTokens, stopTokenIds, stopSequences };
}

export interface SampleKey {
  seed: number | string;
  step: number;
  exampleId: string;
  sampleIndex: number;
}

type Draw = (index: number) => number;

function keyStream(key: SampleKey): Draw {
  const raw: unknown = key;
  if (typeof raw !== 'object' || raw === null) throw new EngineInputError('sample key must be an object');
  const { seed, step, exampleId, sampleIndex } = key;
  const seedOk = typeof seed === 'string' || (typeof seed === 'number' && Number.isFinite(seed));
  if (!seedOk) throw new EngineInputError(`sample key seed must be a string or a finite number, got ${JSON.stringify(seed)}`);
  assertNumberIn(step, 'sample key step', 0, Number.MAX_SAFE_INTEGER, { integer: true, error: EngineInputError });
  if (typeof exampleId !== 'string') throw new EngineInputError(`sample key exampleId must be a string, got ${JSON.stringify(exampleId)}`);
  assertNumberIn(sampleIndex, 'sample key sampleIndex', 0, Number.MAX_SAFE_INTEGER, { integer: true, error: EngineInputError });
  const stream = uniformStream([seed, step, exampleId, sampleIndex, 'sample']);
  return (position) => stream(position);
}

/** `values` of the given ids, as a scratch array the selection below may reorder. */
function gather(ids: Int32Array, values: Float64Array): Float64Array {
  const out = new Float64Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = values[ids[i]!]!;
  return out;
}

/**
 * The m-th largest (1-based) of `scratch`, by three-way quickselect: expected linear time, so top-k
 * costs a few passes over the vocabulary instead of a sort. Reorders `scratch`.
 */
function mthLargest(scratch: Float64Array, m: number): number {
  const target = scratch.length - m;
  let lo = 0;
  let hi = scratch.length - 1;
  const swap = (i: number, j: number): void => {
    const t = scratch[i]!;
    scratch[i] = scratch[j]!;
    scratch[j] = t;
  };
  for (;;) {
    const a = scratch[lo]!;
    const b = scratch[(lo + hi) >>> 1]!;
    const c = scratch[hi]!;
    // Median of three, so sorted or reversed rows do not degrade to quadratic time.
    const pivot = Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
    let lt = lo;
    let gt = hi;
    let i = lo;
    while (i <= gt) {
      const v = scratch[i]!;
      if (v < pivot) swap(lt++, i++);
      else if (v > pivot) swap(i, gt--);
      else i++;
    }
    // Now [lo, lt) < pivot, [lt, gt] = pivot, (gt, hi] > pivot; the pivot is in the range, so it shrinks.
    if (target < lt) hi = lt - 1;
    else if (target > gt) lo = gt + 1;
    else return pivot;
  }
}

/**
 * Of `ids` (ascending), the first `m` in the order (key descending, id ascending), returned in ascending
 * id order, given the m-th largest key: everything above it, then ties at it by ascending id.
 */
function rankPrefix(ids: Int32Array, key: Float64Array, m: number, threshold: number): Int32Array {
  let above = 0;
  for (let i = 0; i < ids.length; i++) if (key[ids[i]!]! > threshold) above++;
  let ties = m - above;
  const out = new Int32Array(m);
  let n = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const k = key[id]!;
    if (k > threshold || (k === threshold && ties-- > 0)) out[n++] = id;
  }
  return out;
}

/**
 * The top-p cut as the rules define it: walking the kept weights from the largest down, summing in that
 * order, the count m at which the sum first reaches `target`, and the m-th largest weight. This sorts
 * every kept weight; it is the definition, and the answer whenever the fast cut below cannot be sure.
 */
function topPCutBySort(kept: Int32Array, weights: Float64Array, target: number): { m: number; threshold: number } {
  const sorted = gather(kept, weights).sort();
  let mass = 0;
  let m = 0;
  while (m < sorted.length && mass < target) {
    mass += sorted[sorted.length - 1 - m]!;
    m++;
  }
  m = Math.max(m, 1);
  return { m, threshold: sorted[sorted.length - m]! };
}

const BUCKETS = 4096;
const UNIT_ROUNDOFF = 2 ** -53;

/**
 * The same cut without sorting the vocabulary: the weights are binned by value (bins are in weight
 * order, so the bins above the cut hold exactly the largest weights), the bin where the running sum
 * reaches `target` is found from the bins' sums, and only that bin is sorted. Its running sum is added
 * in another order than the definition's, so it can differ from it by rounding: at most
 * γ_(n-1)·total (n terms, any summation order). The answer is returned only when the sum is further
 * than that from `target` on both sides of the cut, where the definition must decide the same;
 * otherwise (about once in a million rows of a 49k vocabulary) undefined, and the caller sorts.
 * The sampler calls binnedCut directly, which also returns what keepAboveCut needs.
 */
function topPCutByBins(kept: Int32Array, weights: Float64Array, target: number, total: number): { m: number; threshold: number } | undefined {
  const cut = binnedCut(kept, weights, target, total);
  return cut && { m: cut.m, threshold: cut.threshold };
}

/** The binned cut, its bin, and how many weights exceed its threshold (for keepAboveCut), or undefined. */
function binnedCut(kept: Int32Array, weights: Float64Array, target: number, total: number): BinnedCut | undefined {
  let min = Infinity;
  for (let i = 0; i < kept.length; i++) min = Math.min(min, weights[kept[i]!]!);
  const scale = binScale(min);
  if (scale === undefined) return undefined;
  const { bin, counts, sums } = scratch.binsFor(kept.length);
  for (let i = 0; i < kept.length; i++) {
    const w = weights[kept[i]!]!;
    const b = binOf(w, scale);
    bin[i] = b;
    counts[b]!++;
    sums[b]! += w;
  }
  return cutFromBins(kept, weights, target, total);
}

interface BinnedCut {
  m: number;
  threshold: number;
  bin: number;
  above: number;
}

/** Bins per unit of weight when every weight is in [lowest, 1], or undefined when they cannot differ. */
function binScale(lowest: number): number | undefined {
  const span = 1 - lowest;
  return span > 0 ? (BUCKETS - 1) / span : undefined;
}

/**
 * Monotone in w (each operation is), so a larger weight never lands in a later bin. (1 − w)·scale ≥ 0,
 * so truncating with | 0 is flooring, and it stays in int32 arithmetic: Math.floor and Math.min here
 * were five times slower.
 */
const binOf = (w: number, scale: number): number => {
  const y = (1 - w) * scale;
  return y < BUCKETS - 1 ? y | 0 : BUCKETS - 1;
};

/** The cut from scratch's bins, filled for `kept`. */
function cutFromBins(kept: Int32Array, weights: Float64Array, target: number, total: number): BinnedCut | undefined {
  const n = kept.length;
  if (!(target > 0) || n < 2) return undefined;
  const { bin, counts, sums } = scratch;
  let before = 0;
  let countBefore = 0;
  let cut = 0;
  while (cut < BUCKETS - 1 && before + sums[cut]! < target) {
    before += sums[cut]!;
    countBefore += counts[cut]!;
    cut++;
  }
  const inCut = new Float64Array(counts[cut]!);
  for (let i = 0, j = 0; i < n; i++) if (bin[i] === cut) inCut[j++] = weights[kept[i]!]!;
  inCut.sort();
  let mass = before;
  let m = countBefore;
  let previous = before;
  let threshold = NaN;
  let j = inCut.length - 1;
  for (; j >= 0 && mass < target; j--) {
    previous = mass;
    mass += inCut[j]!;
    threshold = inCut[j]!;
    m++;
  }
  if (!(mass >= target) || m === countBefore) return undefined;
  const slack = 2 * (n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)) * total * 1.01;
  if (mass - target <= slack || target - previous <= slack) return undefined;
  let above = m;
  for (let i = j + 1; i < inCut.length && inCut[i] === threshold; i++) above--;
  return { m, threshold, bin: cut, above };
}

/**
 * The nucleus of a binned cut, as rankPrefix would give it (everything above the threshold, then ties
 * at it by ascending id), in one pass over the bins, with its total summed in id order.
 */
function keepAboveCut(kept: Int32Array, weights: Float64Array, cut: BinnedCut): { kept: Int32Array; total: number } {
  const { bin } = scratch;
  const out = new Int32Array(cut.m);
  let ties = cut.m - cut.above;
  let total = 0;
  let n = 0;
  for (let i = 0; i < kept.length; i++) {
    const b = bin[i]!;
    if (b > cut.bin) continue;
    const id = kept[i]!;
    const w = weights[id]!;
    if (b < cut.bin || w > cut.threshold || (w === cut.threshold && ties-- > 0)) {
      out[n++] = id;
      total += w;
    }
  }
  return { kept: out, total };
}

/**
 * Arrays reused from row to row, so choosing a token allocates little: a 49k row would otherwise
 * allocate and zero about 1 MB. Module state is per thread, and a row is chosen synchronously, so no
 * two rows share them at once. Entries outside the kept ids are stale and never read.
 */
const scratch = {
  weights: new Float64Array(0),
  bin: new Uint16Array(0),
  identity: new Int32Array(0),
  counts: new Int32Array(BUCKETS),
  sums: new Float64Array(BUCKETS),
  weightsFor(n: number): Float64Array {
    if (this.weights.length < n) this.weights = new Float64Array(n);
    return this.weights;
  },
  /** Empty bins, and a bin index per kept position. */
  binsFor(n: number): { bin: Uint16Array; counts: Int32Array; sums: Float64Array } {
    if (this.bin.length < n) this.bin = new Uint16Array(n);
    this.counts.fill(0);
    this.sums.fill(0);
    return this;
  },
  /** The ids 0..n−1 (callers only read it). */
  ids(n: number): Int32Array {
    if (this.identity.length !== n) this.identity = Int32Array.from({ length: n }, (_, i) => i);
    return this.identity;
  },
};

// The two loops that take an exponential per vocabulary entry are small functions of their own, so
// the JIT inlines expNonPositive into them (inside choose() its inlining budget is spent).

/** Σ exp(logit − max) in id order. */
function sumOfShiftedExp(logits: LogitsRow, max: number): number {
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += expNonPositive(logits[i]! - max);
  return sum;
}

/** weights[id] = exp((logit − max) / t) for the kept ids; returns their total in id order (the CDF's order). */
function fillWeights(kept: Int32Array, values: LogitsRow, max: number, t: number, weights: Float64Array): number {
  let total = 0;
  for (let i = 0; i < kept.length; i++) {
    const id = kept[i]!;
    const w = expNonPositive((values[id]! - max) / t);
    weights[id] = w;
    total += w;
  }
  return total;
}

/** Whether the logits are a typed float array, whose entries are numbers by construction. */
const isFloatArray = (row: LogitsRow): row is Float32Array | Float64Array => row instanceof Float32Array || row instanceof Float64Array;

function choose(logits: LogitsRow, position: number, o: SamplingOptions, draw: Draw): { token: number; logprob: number } {
  const n = logits.length;
  if (n === 0) throw new EngineInputError(`logits at position ${position} are empty`);
  const typed = isFloatArray(logits);
  let max = -Infinity;
  let argmax = -1;
  let masked = 0;
  for (let i = 0; i < n; i++) {
    const v = logits[i]!;
    if (!typed && typeof v !== 'number') throw new EngineInputError(`logit at position ${position}, token ${i} is not a number (${String(v)})`);
    // One comparison lets every ordinary value through; NaN and +Infinity fail it.
    if (!(v < Infinity)) {
      if (v !== -Infinity) throw new EngineInputError(`logit at position ${position}, token ${i} is ${v}; only finite values and -Infinity (masked) are allowed`);
    }
    if (v === -Infinity) masked++;
    else if (v > max) {
      max = v;
      argmax = i;
    }
  }
  if (argmax < 0) throw new EngineInputError(`every logit at position ${position} is -Infinity: no token can be sampled`);

  if (o.temperature === 0) {
    return { token: argmax, logprob: -Math.log(sumOfShiftedExp(logits, max)) };
  }

  const t = o.temperature;
  let kept: Int32Array;
  if (masked === 0) kept = scratch.ids(n);
  else {
    kept = new Int32Array(n - masked);
    for (let i = 0, j = 0; i < n; i++) if (logits[i]! > -Infinity) kept[j++] = i;
  }
  const values = typed ? logits : Float64Array.from(logits);
  if (o.topK > 0 && o.topK < kept.length) {
    const asDoubles = values instanceof Float64Array ? values : Float64Array.from(values);
    kept = rankPrefix(kept, asDoubles, o.topK, mthLargest(gather(kept, asDoubles), o.topK));
  }
  const weights = scratch.weightsFor(n);
  const all = fillWeights(kept, values, max, t, weights);
  if (o.topP < 1) {
    const target = (o.topP - TOP_P_SLACK) * all;
    const cut = binnedCut(kept, weights, target, all);
    let total: number;
    if (cut) ({ kept, total } = keepAboveCut(kept, weights, cut));
    else {
      const { m, threshold } = topPCutBySort(kept, weights, target);
      total = all;
      if (m < kept.length) {
        kept = rankPrefix(kept, weights, m, threshold);
        total = 0;
        for (let i = 0; i < kept.length; i++) total += weights[kept[i]!]!;
      }
    }
    return drawFrom(kept, weights, total, values, max, t, draw(position));
  }
  return drawFrom(kept, weights, all, values, max, t, draw(position));
}

/** The inverse-CDF choice among the kept ids (ascending) for the uniform u, and its log-prob. */
function drawFrom(kept: Int32Array, weights: Float64Array, total: number, values: LogitsRow, max: number, t: number, u: number): { token: number; logprob: number } {
  const target = u * total;
  let chosen = -1;
  let cumulative = 0;
  for (let i = 0; i < kept.length; i++) {
    const id = kept[i]!;
    const w = weights[id]!;
    if (w > 0) chosen = id;
    cumulative += w;
    if (cumulative > target) break;
  }
  // chosen ≥ 0: the kept set contains the argmax, whose weight is exp(0) = 1.
  return { token: chosen, logprob: (values[chosen]! - max) / t - Math.log(total) };
}

function checkPosition(position: number): void {
  assertNumberIn(position, 'sampling position', 0, MAX_POSITION, { integer: true, error: EngineInputError });
}

export type StopReason = 'stop-token' | 'stop-sequence' | 'max-new-tokens';

/** A sequence's sampling state: feed it one logits row per step. */
export class SequenceSampler {
  readonly #options: SamplingOptions;
  readonly #draw: Draw;
  readonly #ids: number[] = [];
  readonly #logprobs: number[] = [];
  #stopReason: StopReason | null = null;
  #vocabSize: number | undefined;
  readonly #key: SampleKey;

  constructor(key: SampleKey, options: SamplingOptions) {
    this.#options = checkedSamplingOptions(options);
    this.#draw = keyStream(key);
    this.#key = { ...key };
  }

  /**
   * Chooses the next token from the full-vocabulary logits at the next generated position (the count of
   * tokens generated so far). Returns the token and its log-probability under the sampling distribution.
   */
  next(logits: LogitsRow): { token: number; logprob: number } {
    return this.#record(choose(logits, this.#check(logits.length), this.#options, this.#draw), logits.length);
  }

  /**
   * What another thread needs to make the next choice exactly as next() would: sampleToken(logits, key,
   * position, options) is the same function of the same inputs. Its result goes to record().
   */
  request(): { key: SampleKey; position: number; options: SamplingOptions } {
    return { key: { ...this.#key }, position: this.#ids.length, options: this.#options };
  }

  /** Takes a choice made elsewhere for the request() of this position, from a row of `vocabSize` logits. */
  record(choice: { token: number; logprob: number }, vocabSize: number): { token: number; logprob: number } {
    this.#check(vocabSize);
    return this.#record(choice, vocabSize);
  }

  /** The position of the next token, once the sequence may take one from a row of `vocabSize` logits. */
  #check(vocabSize: number): number {
    if (this.#stopReason !== null) throw new EngineInputError(`the sequence has ended (${this.#stopReason}); no further token can be sampled`);
    const position = this.#ids.length;
    if (this.#vocabSize !== undefined && vocabSize !== this.#vocabSize) {
      throw new EngineInputError(`logits at position ${position} have ${vocabSize} entries, earlier rows had ${this.#vocabSize}`);
    }
    return position;
  }

  #record(choice: { token: number; logprob: number }, vocabSize: number): { token: number; logprob: number } {
    this.#vocabSize = vocabSize;
    this.#ids.push(choice.token);
    this.#logprobs.push(choice.logprob);
    this.#stopReason = this.#ending(choice.token);
    return choice;
  }

  #ending(token: number): StopReason | null {
    const ids = this.#ids;
    if (this.#options.stopTokenIds.includes(token)) return 'stop-token';
    const endsWith = (s: readonly number[]): boolean => s.length <= ids.length && s.every((id, i) => ids[ids.length - s.length + i] === id);
    if (this.#options.stopSequences.some(endsWith)) return 'stop-sequence';
    if (ids.length >= this.#options.maxNewTokens) return 'max-new-tokens';
    return null;
  }

  /** Has the sequence ended (stop token, stop sequence, or maxNewTokens reached)? */
  get done(): boolean {
    return this.#stopReason !== null;
  }

  /** Tokens generated so far, their log-probs, and why the sequence ended (null while it runs). */
  result(): { ids: number[]; logprobs: number[]; truncated: boolean; stopReason: StopReason | null } {
    return { ids: [...this.#ids], logprobs: [...this.#logprobs], truncated: this.#stopReason === 'max-new-tokens', stopReason: this.#stopReason };
  }
}

/** Convenience: the same choice as SequenceSampler for one row, given the generated position. */
export function sampleToken(logits: LogitsRow, key: SampleKey, position: number, options: SamplingOptions): { token: number; logprob: number } {
  checkPosition(position);
  return choose(logits, position, checkedSamplingOptions(options), keyStream(key));
}

/** The two top-p cuts, for the test that the binned one always agrees with the definition or defers to it. */
export const topPCuts = { bySort: topPCutBySort, byBins: topPCutByBins };
