// The command line of a development script (benchmarks, experiment, demo, services): a commander program
// run by the same parser as `dro`, so every script reports a usage mistake in one line with a `--help`
// hint and exit code 2, and a failure doing the work as `<script>: message` with exit code 1.
import { Command, type Option } from 'commander';
import { UsageError, withParser } from '../../cli/options.js';
import { parseCommandLine } from '../../cli/program.js';

/** Exit code of a command line written wrong: nothing was attempted. */
export const EXIT_USAGE = 2;

/** The program of `npm run <script>`: its usage line and `--help` hint read `npm run <script> -- ...`. */
export function scriptProgram(script: string): Command {
  return new Command(`npm run ${script} --`);
}

/**
 * Parses the process's arguments and runs the program's action. `name` prefixes error messages, as in
 * `bench:train: the small config failed`. An action that sets process.exitCode keeps it.
 */
export function runScript(name: string, program: Command): void {
  parseCommandLine(program, process.argv.slice(2)).then(
    (code) => {
      // Non-zero only when help was shown because a subcommand was missing.
      if (code !== 0) process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      if (err instanceof UsageError) {
        console.error(`run \`${err.command ?? program.name()} --help\` for usage`);
        process.exit(EXIT_USAGE);
      }
      process.exit(1);
    },
  );
}

/** `value` if it is one of `allowed`, or a UsageError naming `flag`. */
export function parseChoice<T extends string>(value: string, flag: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

/** An option taking one of `allowed`, which its help lists. */
export function choiceOption(flags: string, description: string, allowed: readonly string[]): Option {
  return withParser(flags, `${description}: ${allowed.join(' or ')}`, (value, flag) => parseChoice(value, flag, allowed));
}

/**
 * An option taking a comma-separated list, each entry parsed by `entry` (e.g. cli/options.ts's
 * parseInteger). Blanks around entries and empty entries are dropped; an empty list is refused.
 */
export function listOption<T>(flags: string, description: string, entry: (value: string, flag: string) => T): Option {
  return withParser(flags, description, (value, flag) => {
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (items.length === 0) throw new UsageError(`${flag} must not be empty`);
    return items.map((item) => entry(item, flag));
  });
}
