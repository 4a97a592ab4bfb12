// The `dro` program around its command groups: commander configured so that every usage mistake (unknown
// command or flag, missing or bad value, extra arguments) surfaces as one UsageError for the entry point
// to print, help and --version end in an exit code instead of process.exit, and help lists nested
// commands (`model init`, ...) at the top level and marks required options. Required options are checked
// after unknown flags and extra arguments, so `dro model init --bogus` names --bogus, not --config.
import { Command, Help, type CommanderError, type Option } from 'commander';
import { UsageError } from './options.js';

/** Exit code when help is shown because no (sub)command was given. */
export const EXIT_NO_COMMAND = 2;

/** The program with nothing registered yet; call parseCommandLine after registering the command groups. */
export function createProgram(version: string): Command {
  return new Command('dro')
    .description('train and inspect DRO/GRPO runs on Temporal, and work with local model directories')
    .version(version, '-V, --version', 'print the version')
    .allowExcessArguments(false)
    .addHelpText('after', '\nRun `dro <command> --help` for its options.');
}

/**
 * Parses `argv` (the user's arguments, without node and the script) and runs the chosen command.
 * Resolves to the exit code (0, or EXIT_NO_COMMAND when only help was shown because a command was missing);
 * rejects with a UsageError for command-line mistakes and with the command's own error otherwise.
 */
export async function parseCommandLine(program: Command, argv: string[]): Promise<number> {
  let current = program;
  const required = new Set<Option>();
  for (const cmd of [program, ...descendants(program)]) {
    for (const option of cmd.options.filter((o) => o.mandatory)) {
      option.mandatory = false; // commander would check it before unknown flags; the preAction hook does instead
      required.add(option);
    }
    cmd.allowExcessArguments(false);
    cmd.configureOutput({ outputError: () => {} }); // the entry point prints the UsageError instead
    cmd.createHelp = () => Object.assign(new DroHelp(required), cmd.configureHelp());
    cmd.hook('preSubcommand', (_parent, sub) => {
      current = sub;
    });
    cmd.exitOverride((err) => {
      throw fromCommander(err, cmd);
    });
  }
  program.hook('preAction', (_program, action) => {
    for (const cmd of [action, ...ancestors(action)]) {
      const missing = cmd.options.find((o) => required.has(o) && cmd.getOptionValue(o.attributeName()) === undefined);
      if (missing) throw new UsageError(`required option '${missing.flags}' not specified`, commandPath(action));
    }
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof Exit) return err.code;
    if (err instanceof UsageError && err.command === undefined) err.command = commandPath(current);
    throw err;
  }
}

/** Help or --version was printed; end with this code. */
class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function fromCommander(err: CommanderError, cmd: Command): UsageError | Exit {
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return new Exit(err.exitCode);
  if (err.code === 'commander.help') return new Exit(err.exitCode === 0 ? 0 : EXIT_NO_COMMAND);
  // commander's message reads "error: unknown option '--x'\n(Did you mean --y?)"; keep it on one line.
  let message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
  // Name the whole command: `unknown command "model train"`, not `unknown command 'train'`.
  if (err.code === 'commander.unknownCommand') {
    const parents = commandPath(cmd).split(' ').slice(1);
    message = message.replace(/^unknown command '([^']*)'/, (_, name: string) => `unknown command ${JSON.stringify([...parents, name].join(' '))}`);
  }
  return new UsageError(message, commandPath(cmd));
}

function descendants(cmd: Command): Command[] {
  return cmd.commands.flatMap((sub) => [sub, ...descendants(sub)]);
}

function ancestors(cmd: Command): Command[] {
  return cmd.parent ? [cmd.parent, ...ancestors(cmd.parent)] : [];
}

/** "dro model init" for `init` under `model`. */
function commandPath(cmd: Command): string {
  return [cmd, ...ancestors(cmd)]
    .reverse()
    .map((c) => c.name())
    .join(' ');
}

/** Help that marks required options and, for a command with nested groups, lists their leaf commands by path. */
class DroHelp extends Help {
  private context: Command | undefined;

  constructor(private readonly required: ReadonlySet<Option>) {
    super();
  }

  override formatHelp(cmd: Command, helper: Help): string {
    this.context = cmd;
    return super.formatHelp(cmd, helper);
  }

  override visibleCommands(cmd: Command): Command[] {
    return super.visibleCommands(cmd).flatMap((sub) => (cmd.commands.includes(sub) && sub.commands.length > 0 ? this.leaves(sub) : [sub]));
  }

  override subcommandTerm(cmd: Command): string {
    const prefix: string[] = [];
    for (let c = cmd.parent; c && c !== this.context; c = c.parent) prefix.unshift(c.name());
    return [...prefix, super.subcommandTerm(cmd)].join(' ');
  }

  override optionDescription(option: Option): string {
    const description = super.optionDescription(option);
    return option.mandatory || this.required.has(option) ? `${description} (required)` : description;
  }

  private leaves(cmd: Command): Command[] {
    // The group's own implicit `help` command is left out; the top-level one covers it.
    return super
      .visibleCommands(cmd)
      .filter((sub) => cmd.commands.includes(sub))
      .flatMap((sub) => (sub.commands.length > 0 ? this.leaves(sub) : [sub]));
  }
}
