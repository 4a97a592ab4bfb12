// The quickstart: the local Temporal dev server (started if it is not running), an all-in-one worker,
// and a short DRO run on the synthetic arithmetic task with the tiny default model (supervised warm
// start, then DRO with R3), with live progress and a before/after table of held-out accuracy. It stops
// the worker it started and says what it leaves running.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { servicesConfig, servicesStatus, servicesUp } from './services/dev-services.js';
import { followRun } from './cli/progress.js';
import { connectClient, newRunId, readRunConfig, runEvaluations, startRun } from './cli/runs.js';
import { WorkerProcess } from './worker-process.js';
import { makeDirectoriesSync } from '../storage/local-files.js';

const ROOT = join(import.meta.dirname, '..');
const CONFIG = join(ROOT, 'scripts', 'quickstart.config.json');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('   ')).join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  const cfg = servicesConfig();
  const [temporal] = await servicesStatus(cfg, ['temporal']);
  let startedTemporal = false;
  if (!temporal!.answering) {
    console.log('==> starting the Temporal dev server');
    await servicesUp(cfg, ['temporal'], (line) => console.log(`    ${line}`));
    startedTemporal = true;
  }

  console.log('==> starting an all-in-one worker (control + policy)');
  makeDirectoriesSync(join(cfg.dataDir, 'logs'));
  const logFile = join(cfg.dataDir, 'logs', 'quickstart-worker.log');
  const worker = await WorkerProcess.start('all');
  const stopWorker = async (): Promise<void> => {
    await worker.kill('SIGTERM');
    await writeFile(logFile, worker.output);
  };
  process.once('SIGINT', () => void stopWorker().then(() => process.exit(130)));

  const c = await connectClient();
  try {
    const config = await readRunConfig(CONFIG, ROOT);
    const runId = `quickstart-${newRunId().slice(4)}`;
    const run = await startRun(c, config, runId);
    console.log(`==> run ${runId}: ${config.sft.steps} warm-start (SFT) steps on demonstrations with ${config.sft.slipRate * 100}% slips, then ${config.schedule.totalSteps} DRO steps with the R3 reward`);
    console.log(`    Web UI: ${run.link}`);
    const followed = await followRun(run.handle, process.stdout);
    // Ctrl-C: the SIGINT handler above stops the worker and exits.
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
  } finally {
    await c.close();
    await stopWorker();
  }
  console.log(
    startedTemporal
      ? `\nLeft running: the Temporal dev server (Web UI http://127.0.0.1:${cfg.temporal.uiPort}), so you can browse the run. Stop it with \`npm run services:down\`.`
      : '\nThe Temporal dev server was already running and is left as it was. The worker this script started is stopped.',
  );
}

main().catch((err: unknown) => {
  console.error(`quickstart: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
