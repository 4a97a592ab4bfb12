// Command-line flag checks shared by the benchmark scripts.

/** The flag's value as a positive integer, or an error naming the flag and what was given. */
export function positiveIntegerFlag(value: string | undefined, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${value}`);
  return n;
}
