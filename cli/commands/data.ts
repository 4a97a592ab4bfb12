// `dro data check`: what a run config's data looks like to the model before anything starts (counts, token
// lengths under the model's tokenizer, every unusable record by file and line), and the same check that
// `dro train` runs before it starts a run.
import type { Command } from 'commander';
import { checkRunData, formatProblems, type DataCheck, type LengthSummary } from '../../activities/run-data.js';
import type { RunConfig } from '../../dro/config.js';
import { setOption, type ConfigSetting } from '../config-file.js';
import { readCommandConfig } from './config.js';
import { jsonOption, textOption } from '../options.js';

/** The run's data as checkRunData sees it; its failures (a missing file, a bad model) become plain errors. */
export async function checkData(config: RunConfig): Promise<DataCheck> {
  try {
    return await checkRunData(config);
  } catch (err) {
    // Activities raise ApplicationFailures; here only their words matter.
    throw new Error((err as Error).message, { cause: err });
  }
}

const lengths = (s: LengthSummary | undefined): string => (s ? `p50 ${s.p50}, p90 ${s.p90}, p99 ${s.p99}, max ${s.max}` : '-');

/** The report `dro data check` prints. */
export function formatDataCheck(check: DataCheck, config: RunConfig): string[] {
  const lines = [`task ${check.task}; ${check.tokenizer}${check.chat ? ', prompts through its chat template' : ''}`];
  for (const [name, set] of [['train', check.train], ['eval', check.eval]] as const) {
    lines.push(`${name}: ${set.usable} usable example${set.usable === 1 ? '' : 's'} from ${set.from}`);
    lines.push(`  prompt tokens:    ${lengths(set.prompt)} (data.maxPromptTokens ${config.data.maxPromptTokens})`);
    lines.push(`  reference tokens: ${lengths(set.reference)} (data.maxReferenceTokens ${config.data.maxReferenceTokens})`);
  }
  if (check.answers) lines.push(check.answers.check === 'none' ? 'answers: not checked (data.jsonl.answerCheck none)' : `answers: ${check.answers.checked} of ${check.answers.of} training records have one, checked '${check.answers.check}'`);
  if (check.demonstrations) lines.push(`warm start: ${check.demonstrations.usable} demonstrations from ${check.demonstrations.from}`);
  for (const w of check.warnings) lines.push(`warning: ${w}`);
  if (check.problems.length === 0) lines.push('no problems');
  else lines.push(`${check.problems.length} problem${check.problems.length === 1 ? '' : 's'}${check.problems.length > 20 ? ' (the first 20)' : ''}:`, ...formatProblems(check.problems).map((l) => `  ${l}`));
  return lines;
}

/**
 * The check `dro train` runs before it starts anything. An unusable record in a file the user gave (the jsonl
 * task's files, data.trainPath/evalPath, sft.demonstrations) refuses the run with the records listed: a run
 * that silently trains on part of a user's file is worse than no run. The built-in datasets' records that do
 * not fit the token budgets are left out with a note, as they always were, unless none is left.
 */
export async function requireCleanData(config: RunConfig, configFile: string, note: (line: string) => void): Promise<void> {
  const check = await checkData(config);
  const given = new Set([config.data.trainPath, config.data.evalPath, config.sft.demonstrations].filter((f): f is string => f !== null));
  const theirs = check.problems.filter((p) => given.has(p.file));
  const builtIn = check.problems.length - theirs.length;
  const hint = `\`dro data check --config ${configFile}\` shows the whole report`;
  if (theirs.length > 0) {
    const n = theirs.length;
    throw new Error(`${configFile}: ${n} data record${n === 1 ? '' : 's'} cannot be used (nothing was started):\n${formatProblems(theirs).map((l) => `  ${l}`).join('\n')}\nfix them or drop them from the file; ${hint}`);
  }
  if (check.train.usable === 0) throw new Error(`${configFile}: no training example can be used (nothing was started); first problem: ${formatProblems(check.problems, 1)[0] ?? 'none'}; ${hint}`);
  if (builtIn > 0) note(`note: ${builtIn} record${builtIn === 1 ? '' : 's'} of the ${config.data.task} dataset do not fit the token budgets and are left out; ${hint}`);
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description("check a run config's training and evaluation data before a run");
  data
    .command('check')
    .description("load and tokenize a run config's data as the workers will: counts, token-length percentiles, and every unusable record by file and line (exit 1 if any)")
    .addOption(textOption('--config <file>', 'run config (YAML or JSON)').makeOptionMandatory())
    .addOption(setOption())
    .addOption(jsonOption())
    .action(async (o: { config: string; set?: ConfigSetting[]; json: boolean }) => {
      const config = await readCommandConfig(o.config, o.set);
      const check = await checkData(config);
      if (o.json) console.log(JSON.stringify(check, null, 2));
      else for (const line of formatDataCheck(check, config)) console.log(line);
      if (check.problems.length > 0) process.exitCode = 1;
    });
}
