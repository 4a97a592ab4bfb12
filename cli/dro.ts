// The `dro` command line. Entry points stay small: build the program, register the command groups, run,
// and exit 1 with a message a user understands (no stack trace). Commands live in cli/commands/.
import { readFileSync } from 'node:fs';
import { registerChatCommand } from './commands/chat.js';
import { registerConfigCommands } from './commands/config.js';
import { registerControlCommands } from './commands/steer.js';
import { registerDataCommands } from './commands/data.js';
import { registerModelCommands } from './commands/model.js';
import { UsageError } from './options.js';
import { createProgram, parseCommandLine } from './program.js';
import { registerReportCommands } from './commands/report.js';
import { registerRunCommands } from './commands/runs.js';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

// `dro metrics | head` closes the pipe early: that ends the output, it is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = createProgram(version);
registerModelCommands(program);
registerRunCommands(program);
registerConfigCommands(program);
registerDataCommands(program);
registerControlCommands(program);
registerReportCommands(program);
registerChatCommand(program);

parseCommandLine(program, process.argv.slice(2)).then(
  (code) => {
    // A command may have set its own exit code (e.g. `dro data check` finding problems).
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`dro: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof UsageError) console.error(`run \`${err.command ?? 'dro'} --help\` for usage`);
    process.exit(1);
  },
);
