// Small statistics and input checks shared by the DRO functions (one definition of "std" for all).
// Every check throws a DroInputError that names the argument and the problem.

export class DroInputError extends Error {
  override readonly name = 'DroInputError';
}

/**
 * The class a check throws: DroInputError unless the caller names its own, so a module with its own
 * input-error class (the engine's sampler: EngineInputError) uses these checks without re-wrapping.
 */
export type InputErrorClass = new (message: string) => Error;

export function mean(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Population standard deviation (divides by n); 0 for a single value. */
export function populationStd(values: readonly number[]): number {
  const m = mean(values);
  let sq = 0;
  for (const v of values) sq += (v - m) * (v - m);
  return Math.sqrt(sq / values.length);
}

/** True when all values are the same number (an exact test: no rounding can create spread). */
export function allEqual(values: readonly number[]): boolean {
  return values.every((v) => v === values[0]);
}

/** The q-quantile with linear interpolation between order statistics (NumPy's default, "type 7"). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new DroInputError('quantile of an empty list');
  if (!(q >= 0 && q <= 1)) throw new DroInputError(`quantile level must be in [0, 1], got ${q}`);
  const sorted = [...values].sort((a, b) => a - b);
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function assertFiniteVector(values: readonly number[], what: string, opts: { nonEmpty?: boolean } = {}): void {
  if (!isArray(values)) throw new DroInputError(`${what} must be an array of numbers`);
  if (opts.nonEmpty && values.length === 0) throw new DroInputError(`${what} is empty`);
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new DroInputError(`${what}[${i}] is not a finite number (${String(v)})`);
  });
}

// Array.isArray would narrow a readonly number[][] to any[]; this keeps the element type honest.
const isArray = (value: unknown): value is readonly unknown[] => Array.isArray(value);

/** Checks a non-empty rectangular matrix of finite numbers; returns [rows, columns]. */
export function assertFiniteMatrix(rows: readonly (readonly number[])[], what: string): [number, number] {
  if (!isArray(rows) || rows.length === 0) throw new DroInputError(`${what} has no rows`);
  const first: unknown = rows[0];
  const width = isArray(first) ? first.length : 0;
  rows.forEach((row, i) => {
    if (!isArray(row)) throw new DroInputError(`${what}[${i}] is not an array`);
    if (row.length !== width) throw new DroInputError(`${what} is ragged: row 0 has ${width} entries, row ${i} has ${row.length}`);
    assertFiniteVector(row, `${what}[${i}]`);
  });
  if (width === 0) throw new DroInputError(`${what} has no columns`);
  return [rows.length, width];
}

/** Rejects option keys the function does not know, and values outside their allowed set. */
export function assertKnownKeys(options: object, known: readonly string[], what: string, InputError: InputErrorClass = DroInputError): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new InputError(`unknown ${what} option "${key}" (known: ${known.join(', ')})`);
  }
}

export function assertOneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): asserts value is T {
  if (!allowed.includes(value as T)) throw new DroInputError(`${what} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(value)}`);
}

export function assertNumberIn(
  value: unknown,
  what: string,
  min: number,
  max: number,
  opts: { minExclusive?: boolean; maxExclusive?: boolean; integer?: boolean; error?: InputErrorClass } = {},
): asserts value is number {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (opts.minExclusive ? value > min : value >= min) &&
    (opts.maxExclusive ? value < max : value <= max) &&
    (!opts.integer || Number.isInteger(value));
  if (!ok) {
    const range = `${opts.minExclusive ? '(' : '['}${min}, ${max === Infinity ? '∞)' : `${max}${opts.maxExclusive ? ')' : ']'}`}`;
    throw new (opts.error ?? DroInputError)(`${what} must be ${opts.integer ? 'an integer' : 'a number'} in ${range}, got ${JSON.stringify(value)}`);
  }
}
