// `dro config show|fields`: the run config exactly as `dro train` would run it (every default filled in,
// --set applied, paths made absolute), and every field with its allowed values, default and meaning, from
// the same schema docs as README's table, so that a person can write a config without reading the source.
import { Option, type Command } from 'commander';
import { stringify } from 'yaml';
import { RunConfigError, runConfigFieldDocs, type RunConfig } from '../../dro/config.js';
import { readRunConfig, resolveRunConfig } from '../client.js';
import { setOption, type ConfigSetting } from '../config-file.js';
import { textOption } from '../options.js';

/**
 * The run config of a command's --config (none: the defaults) and --set options. A RunConfigError names
 * where the config came from, so "rollout.groupSize: must be a whole number" points at the file or the flag.
 */
export async function readCommandConfig(file: string | undefined, settings: readonly ConfigSetting[] = []): Promise<RunConfig> {
  const source = [file, settings.length > 0 ? '--set' : undefined].filter(Boolean).join(' with ') || 'the defaults';
  try {
    return file === undefined ? resolveRunConfig({}, process.cwd(), settings, source) : await readRunConfig(file, process.cwd(), settings);
  } catch (err) {
    if (err instanceof RunConfigError) throw new Error(`${source}: ${err.message}`, { cause: err });
    throw err;
  }
}

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('show a run config with every default filled in, or list every config field');
  config
    .command('show')
    .description('print the run config that `dro train` would run with these options: the file, --set over it, every default filled in, paths made absolute (YAML, which --config reads back)')
    .addOption(textOption('--config <file>', 'run config (YAML or JSON; default: none, every field at its default)'))
    .addOption(setOption())
    .addOption(new Option('--json', 'print JSON instead of YAML').default(false))
    .action(async (o: { config?: string; set?: ConfigSetting[]; json: boolean }) => {
      const resolved = await readCommandConfig(o.config, o.set);
      // lineWidth 0: long texts stay on one line, as a person wrote them.
      process.stdout.write(o.json ? `${JSON.stringify(resolved, null, 2)}\n` : stringify(resolved, { lineWidth: 0 }));
    });
  config
    .command('fields')
    .description('every run config field: its dotted path (for the file and for --set), allowed values, default and meaning; README "Run configuration" is the same list')
    .addOption(new Option('--json', 'print JSON: [{ path, allowed, default, description }]').default(false))
    .action((o: { json: boolean }) => {
      const docs = runConfigFieldDocs();
      if (o.json) return console.log(JSON.stringify(docs.map((d) => ({ path: d.path, allowed: d.allowed, default: JSON.parse(d.default) as unknown, description: d.description })), null, 2));
      for (const d of docs) console.log(`${d.path}: ${d.allowed}, default ${d.default}\n    ${d.description}`);
    });
}
