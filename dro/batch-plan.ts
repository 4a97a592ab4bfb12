// The batch plan's packing: sequences, longest first, into micro-batches bounded by a token budget
// (padding counted: a micro-batch costs its size × its longest sequence) and a sequence count.
// A pure function of the lengths and the limits, so the same step and config always pack the same way,
// whichever worker runs it.

export interface PackLimits {
  /** Most tokens per micro-batch, padding included (sequences × the longest). */
  maxTokens: number;
  /** Most sequences per micro-batch; Infinity for none. */
  maxSequences: number;
  /**
   * 'refuse' (the default): a sequence longer than maxTokens is an error. 'alone': it gets a micro-batch
   * of its own, for forward-only work whose memory one long sequence cannot blow up.
   */
  oversize?: 'refuse' | 'alone';
}

export class PackingError extends Error {
  override readonly name = 'PackingError';
  constructor(
    message: string,
    /** The first sequence that fits no micro-batch. */
    readonly index: number,
    readonly length: number,
  ) {
    super(message);
  }
}

/**
 * Longest first: the sequences sorted by length (longest first, ties by index), then greedily into
 * micro-batches, a sequence joining the current one unless that would exceed either limit. Sorting puts
 * sequences of like length together, so a batch of chains that stop anywhere between a few tokens and
 * the limit pads little (in plan order it pads every micro-batch to its longest straggler: about half of
 * TRL's 4 × 8 × 128 shape was padding). Within a micro-batch the indices stay in plan order, so a batch
 * that fits one micro-batch runs exactly as the whole batch. Returns each micro-batch's sequence indices.
 * A sequence longer than maxTokens fits no micro-batch: refused, naming it (splitting one would change
 * what the loss sees), or alone.
 */
export function packByTokens(lengths: readonly number[], limits: PackLimits): number[][] {
  const { maxTokens, maxSequences } = limits;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  if (!(maxSequences === Infinity || (Number.isSafeInteger(maxSequences) && maxSequences >= 1))) throw new RangeError(`maxSequences must be a positive integer or Infinity, got ${maxSequences}`);
  lengths.forEach((length, i) => {
    if (!Number.isSafeInteger(length) || length < 1) throw new RangeError(`sequence ${i}: length must be a positive integer, got ${length}`);
  });
  const oversized = lengths.findIndex((length) => length > maxTokens);
  if (oversized >= 0 && limits.oversize !== 'alone') throw new PackingError(`sequence ${oversized} has ${lengths[oversized]} tokens, more than a micro-batch's ${maxTokens}`, oversized, lengths[oversized]!);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const out: number[][] = [];
  let current: number[] = [];
  for (const i of order) {
    // Longest first, so the micro-batch's first sequence is its longest.
    const widest = current.length > 0 ? lengths[current[0]!]! : lengths[i]!;
    if (current.length > 0 && (current.length + 1 > maxSequences || (current.length + 1) * widest > maxTokens)) {
      out.push(current);
      current = [];
    }
    current.push(i);
  }
  if (current.length > 0) out.push(current);
  return out.map((group) => group.sort((a, b) => a - b));
}

/** The padded token count of each micro-batch of a packing: its size × its longest sequence. */
export function paddedTokens(lengths: readonly number[], plan: readonly (readonly number[])[]): number[] {
  return plan.map((group) => group.length * Math.max(...group.map((i) => lengths[i]!)));
}
