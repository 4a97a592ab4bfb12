// Option parsers shared by every `dro` command: each binds its flag's name, so a bad value is reported
// as e.g. `--seed must be an integer ≥ 0, got "x"`. Build options here, mark them required or give them
// defaults at the call site (`.makeOptionMandatory()`, `.default(1)`).
import { Option } from 'commander';

/** A mistake in how the command line was written (as opposed to a failure doing the work). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The command it concerns, e.g. "dro model init", for the `--help` hint; filled in by the parser if left out. */
  command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** `value` as an integer ≥ `min` (and ≤ `max`, said why in `maxWhy`), or a UsageError naming `flag`. */
export function parseInteger(value: string, flag: string, min: number, max?: { value: number; why: string }): number {
  const n = Number(value);
  // Above 2^53 neighbouring integers share one double, so two different seeds would silently collide.
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) throw new UsageError(`${flag} must be an integer from ${min} to 2^53 - 1 (${Number.MAX_SAFE_INTEGER}), got ${JSON.stringify(value)}`);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  if (max && n > max.value) throw new UsageError(`${flag} must be at most ${max.value} (${max.why}), got ${JSON.stringify(value)}`);
  return n;
}

/** `value` as a finite number, or a UsageError naming `flag`. */
export function parseNumber(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

/** A positive amount of memory in GiB (fractions allowed), as bytes, or a UsageError naming `flag`. */
export function parseGiB(value: string, flag: string): number {
  const n = parseNumber(value, flag);
  if (n <= 0) throw new UsageError(`${flag} must be a positive number of GiB, got ${value}`);
  return Math.floor(n * 1024 ** 3);
}

/** A comma-separated list of token ids (integers ≥ 0), or a UsageError naming `flag` and the bad entry. */
export function parseIds(value: string, flag: string): number[] {
  return value.split(',').map((s, i) => {
    const n = Number(s.trim());
    if (s.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`${flag} entry ${i} (${JSON.stringify(s)}) is not a token id`);
    return n;
  });
}

/** `value` unless it is empty (a path or name the user left blank). */
export function parseText(value: string, flag: string): string {
  if (value === '') throw new UsageError(`${flag} must not be empty`);
  return value;
}

/** An option whose value goes through `parse`, which is told the flag's name for its message (for option kinds beyond the ones below). */
export function withParser<T>(flags: string, description: string, parse: (value: string, flag: string) => T): Option {
  const option = new Option(flags, description);
  const flag = option.long ?? option.short ?? flags;
  return option.argParser((value: string) => parse(value, flag));
}

/** An option taking an integer ≥ `min` (1 for counts and thread numbers, 0 for seeds). */
export const integerOption = (flags: string, description: string, min: number, max?: { value: number; why: string }): Option => withParser(flags, description, (v, f) => parseInteger(v, f, min, max));
/** An option taking any finite number. */
export const numberOption = (flags: string, description: string): Option => withParser(flags, description, parseNumber);
/** An option taking a comma-separated list of token ids. */
export const idsOption = (flags: string, description: string): Option => withParser(flags, description, parseIds);
/** An option taking a non-empty string (a path, a name). */
export const textOption = (flags: string, description: string): Option => withParser(flags, description, parseText);
/** `--json`: print JSON instead of a table. */
export const jsonOption = (): Option => new Option('--json', 'print JSON instead of a table').default(false);
