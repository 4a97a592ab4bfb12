// Units of work: a step's sequences, in the batch plan's order, cut into consecutive units of
// rollout.batchSequences sequences. A unit is exactly one engine call of the plan, so its result is a
// function of (policy version, unit, config) and never of which worker, or how many, computed it.

/** How many units `sequences` sequences make at `perUnit` per unit (the last one may be shorter). */
export function unitCount(sequences: number, perUnit: number): number {
  if (!Number.isInteger(perUnit) || perUnit < 1) throw new RangeError(`a unit holds at least one sequence, not ${perUnit}`);
  return Math.ceil(sequences / perUnit);
}

/** The sequences of unit `unit`: indices [start, end) into the step's plan. */
export function unitRange(unit: number, perUnit: number, sequences: number): { start: number; end: number } {
  const count = unitCount(sequences, perUnit);
  if (!Number.isInteger(unit) || unit < 0 || unit >= count) throw new RangeError(`unit ${unit} does not exist: ${sequences} sequences make ${count} units of ${perUnit}`);
  return { start: unit * perUnit, end: Math.min(sequences, (unit + 1) * perUnit) };
}

/** The scoring requests of R3 for `prompts` groups: G chains each, and the masked chain when that contrast is on. */
export const scoredSequences = (prompts: number, groupSize: number, masked: boolean): number => prompts * (groupSize + (masked ? 1 : 0));
