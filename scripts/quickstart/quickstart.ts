// The quickstart: the local Temporal dev server (started if it is not running), an all-in-one worker,
// and a short DRO run on the synthetic arithmetic task with the tiny default model (supervised warm
// start, then DRO with R3), with live progress and a before/after table of held-out accuracy. It stops
// the worker it started and says what it leaves running.
import { join } from 'node:path';
import { followRun } from '../../cli/progress.js';
import { newRunId, readRunConfig, runEvaluations, startRun } from '../../cli/client.js';
import { withLocalWorker } from '../lib/local-run.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CONFIG = join(import.meta.dirname, 'quickstart.config.json');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('   ')).join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  await withLocalWorker('quickstart', async ({ client: c }) => {
    const config = await readRunConfig(CONFIG, ROOT);
    const runId = `quickstart-${newRunId().slice(4)}`;
    const run = await startRun(c, config, runId);
    console.log(`==> run ${runId}: ${config.sft.steps} warm-start (SFT) steps on demonstrations with ${config.sft.slipRate * 100}% slips, then ${config.schedule.totalSteps} DRO steps with the R3 reward`);
    console.log(`    Web UI: ${run.link}`);
    const followed = await followRun(run.handle, process.stdout);
    // Ctrl-C: withLocalWorker's SIGINT handler stops the worker and exits.
    if (!followed.ended) return;
    const { result } = followed;
    const evals = await runEvaluations(config.checkpoint.store, runId, [0, result.steps]);
    const before = evals[0];
    const after = evals[result.steps];
    if (!before || !after) throw new Error(`the run completed but its evaluations are missing from ${config.checkpoint.store}`);
    const pct = (x: number | undefined): string => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);
    console.log(`\nHeld-out accuracy, ${config.evaluation.examples} unseen ${config.data.synthetic.digits}-digit additions, one answer sampled at temperature ${config.evaluation.temperature} each:\n`);
    console.log(
      table([
        ['', 'accuracy', 'malformed'],
        ['base (after SFT, step 0)', pct(before.accuracy), pct(before.malformed)],
        [`after DRO (step ${result.steps})`, pct(after.accuracy), pct(after.malformed)],
      ]),
    );
    const delta = (after.accuracy ?? 0) - (before.accuracy ?? 0);
    console.log(delta > 0 ? `\nDRO improved accuracy by ${(100 * delta).toFixed(1)} points.` : `\nDRO did not improve accuracy in this run (${(100 * delta).toFixed(1)} points).`);
    console.log(`\nrun ${runId} (${((Date.now() - started) / 1000).toFixed(0)} s); checkpoints and metrics in ${config.checkpoint.store}/${runId}/`);
    console.log(`  Web UI:      ${run.link}`);
    console.log(`  inspect:     ./bin/dro status --run ${runId}    ./bin/dro metrics --run ${runId}    ./bin/dro checkpoints --run ${runId}`);
    console.log(`  resume:      ./bin/dro worker &   then   ./bin/dro resume --run ${runId} --follow   (for a run that was interrupted)`);
    console.log(`  report:      ./bin/dro report --run ${runId}    (charts and evaluations in ./reports/${runId}/index.html)`);
  });
}

main().catch((err: unknown) => {
  console.error(`quickstart: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
