// `npm run fuzz -- --runs <n> [--seed <s>]`: the parser properties of test/properties.ts, run longer than
// CI runs them, printing how many inputs each property tried and how they ended.
import { checkProperties } from '../../test/properties.js';
import { integerOption } from '../../cli/options.js';
import { runScript, scriptProgram } from '../lib/command-line.js';

async function main(o: { runs: number; seed?: number }): Promise<void> {
  const started = performance.now();
  const results = await checkProperties(o.runs, o.seed);
  for (const r of results) console.log(`${r.name.padEnd(22)} ${String(r.accepted + r.refused).padStart(8)} inputs: ${r.accepted} accepted, ${r.refused} refused with the typed error`);
  console.log(`all ${results.length} properties held (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

const program = scriptProgram('fuzz')
  .description('The parser properties of test/properties.ts, run longer than CI runs them: how many inputs each property tried and how they ended.')
  .addOption(integerOption('--runs <n>', 'inputs per property', 1).default(10_000))
  .addOption(integerOption('--seed <s>', 'fast-check seed (default: random; a failure prints the seed to replay)', 0))
  .action(main);
runScript('fuzz', program);
