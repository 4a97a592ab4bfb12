// `npm run fuzz -- --runs <n> [--seed <s>]`: the parser properties of test/properties.ts, run longer than
// CI runs them, printing how many inputs each property tried and how they ended.
import { Command } from 'commander';
import { checkProperties } from '../../test/properties.js';
import { integerOption } from '../../cli/options.js';

const program = new Command('fuzz')
  .addOption(integerOption('--runs <n>', 'inputs per property', 1).default(10_000))
  .addOption(integerOption('--seed <s>', 'fast-check seed (default: random; a failure prints the seed to replay)', 0))
  .parse(process.argv);
const o = program.opts<{ runs: number; seed?: number }>();
const started = performance.now();
const results = await checkProperties(o.runs, o.seed);
for (const r of results) console.log(`${r.name.padEnd(22)} ${String(r.accepted + r.refused).padStart(8)} inputs: ${r.accepted} accepted, ${r.refused} refused with the typed error`);
console.log(`all ${results.length} properties held (${((performance.now() - started) / 1000).toFixed(1)} s)`);
