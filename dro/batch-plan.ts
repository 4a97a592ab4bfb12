// The batch plan's packing: sequences, in their fixed order, into consecutive micro-batches bounded by a
// token budget (padding counted: a micro-batch costs its size × its longest sequence) and a sequence count.
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
 * Greedy, in order: a sequence joins the current micro-batch unless that would exceed either limit, else
 * it starts the next one. Returns each micro-batch's sequence indices. A sequence longer than maxTokens
 * fits no micro-batch: refused, naming it (splitting one would change what the loss sees), or alone.
 */
export function packByTokens(lengths: readonly number[], limits: PackLimits): number[][] {
  const { maxTokens, maxSequences } = limits;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  if (!(maxSequences === Infinity || (Number.isSafeInteger(maxSequences) && maxSequences >= 1))) throw new RangeError(`maxSequences must be a positive integer or Infinity, got ${maxSequences}`);
  const out: number[][] = [];
  let current: number[] = [];
  let longest = 0;
  lengths.forEach((length, i) => {
    if (!Number.isSafeInteger(length) || length < 1) throw new RangeError(`sequence ${i}: length must be a positive integer, got ${length}`);
    if (length > maxTokens && limits.oversize !== 'alone') throw new PackingError(`sequence ${i} has ${length} tokens, more than a micro-batch's ${maxTokens}`, i, length);
    const wider = Math.max(longest, length);
    if (current.length > 0 && (current.length + 1 > maxSequences || (current.length + 1) * wider > maxTokens)) {
      out.push(current);
      current = [];
      longest = 0;
    }
    current.push(i);
    longest = Math.max(longest, length);
  });
  if (current.length > 0) out.push(current);
  return out;
}

/** The padded token count of each micro-batch of a packing: its size × its longest sequence. */
export function paddedTokens(lengths: readonly number[], plan: readonly (readonly number[])[]): number[] {
  return plan.map((group) => group.length * Math.max(...group.map((i) => lengths[i]!)));
}
