// `npm run experiment:reproduce`: the paper's claims at small scale, as real trainingRun workflows. Every
// (arm, seed) of scripts/experiment/reproduce.config.json is a durable run with an id derived from its
// config: a run that completed is not run again, one that was interrupted is resumed from its last
// checkpoint, the rest are started, one at a time, on the local services (or whatever Temporal the
// environment names). Then reproduction.md and its charts are generated from the runs' records.
import { readFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { listCheckpoints } from '../../storage/checkpoints.js';
import { evaluationWorkflowId, trainingWorkflowId } from '../../workflows/messages.js';
import type { trainingRun } from '../../workflows/training-run.js';
import { followRun } from '../../cli/progress.js';
import { describeRun, expandHome, failureMessage, queryProgress, resumeRun, startRun, storeFor, type Connected } from '../../cli/client.js';
import { parseExperimentConfig, planExperiment, type PlannedRun } from './plan.js';
import { InvocationLog } from './invocations.js';
import { writeReproductionReport } from './report.js';
import { withLocalWorker } from '../lib/local-run.js';
import { gitCommit, machineLine } from '../lib/provenance.js';
import { runScript, scriptProgram } from '../lib/command-line.js';
import { textOption } from '../../cli/options.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CONFIG = join(import.meta.dirname, 'reproduce.config.json');
/** Brings one run to completion: keeps it when done (false), resumes it when interrupted, starts it otherwise (true). */
async function complete(c: Connected, run: PlannedRun, log: (line: string) => void): Promise<boolean> {
  const d = await describeRun(c, run.runId);
  const store = await storeFor(run.config.checkpoint.store);
  const valid = (await listCheckpoints(store, run.runId, { verify: 'size' })).filter((x) => x.valid);
  await store.close();
  if (d.state === 'completed' && d.status !== 'stopped') {
    // Temporal remembers the run, but the report reads the store: a run whose records are elsewhere cannot count.
    if (valid.at(-1)?.step !== run.config.schedule.totalSteps) throw new Error(`${run.runId} completed, but ${run.config.checkpoint.store} does not hold its final checkpoint (it ran with another --store?); pass that store, or --tag <name> to run afresh`);
    log(`${run.runId}: completed before; kept`);
    await evaluationsDone(c, run.runId, log);
    return false;
  }
  if (d.state !== 'running') {
    const hasCheckpoints = valid.length > 0;
    if (hasCheckpoints || d.state !== 'not-found') {
      const outcome = await resumeRun(c, run.runId, { store: run.config.checkpoint.store, log });
      log(`${run.runId}: ${outcome.message}`);
    } else {
      await startRun(c, run.config, run.runId);
      log(`${run.runId}: started`);
    }
  } else log(`${run.runId}: running already; following it`);
  const followed = await followRun(c.client.workflow.getHandle<typeof trainingRun>(trainingWorkflowId(run.runId)), process.stdout);
  if (!followed.ended) throw new Error('interrupted; run the command again to continue where it stopped');
  await evaluationsDone(c, run.runId, log);
  return true;
}

/**
 * Waits for the evaluations a finished run started and did not wait for (children it abandons, whose
 * units may still be running): the report reads every evaluation from the store.
 */
async function evaluationsDone(c: Connected, runId: string, log: (line: string) => void): Promise<void> {
  const progress = await queryProgress(c, runId);
  for (const step of progress?.evaluationsStarted ?? []) {
    // One that failed is missing from the report, which lists the evaluated steps: say why here.
    await c.client.workflow
      .getHandle(evaluationWorkflowId(runId, step))
      .result()
      .catch((err: unknown) => log(`${runId}: the evaluation of step ${step} failed: ${failureMessage(err)}`));
  }
}

interface Options {
  quick?: boolean;
  out: string;
  store?: string;
  tag?: string;
  reportOnly?: boolean;
}

async function main(values: Options): Promise<void> {
  const configText = await readFile(CONFIG, 'utf8');
  const experiment = parseExperimentConfig(JSON.parse(configText), CONFIG);
  const store = values.store === undefined ? undefined : resolveStore(values.store);
  const plan = planExperiment(experiment, values.quick ? 'quick' : 'full', { ...(store === undefined ? {} : { store }), ...(values.tag === undefined ? {} : { tag: values.tag }) });
  // The config's relative store is the repository's runs/ folder, as for every run started from the repository.
  for (const r of plan.runs) r.config.checkpoint.store = resolveStore(r.config.checkpoint.store);
  const uri = plan.runs[0]!.config.checkpoint.store;
  console.log(`==> ${plan.runs.length} runs (${plan.mode} settings): ${plan.runs.map((r) => `${r.arm}/s${r.seed}`).join(', ')}; store ${uri}`);

  const commit = gitCommit();
  if (!values.reportOnly) {
    const records = await storeFor(uri);
    try {
      const invocation = new InvocationLog(records, plan, { commit, machine: machineLine() });
      await withLocalWorker('reproduce', async ({ client }) => {
        for (const run of plan.runs) if (await complete(client, run, (line) => console.log(`==> ${line}`))) await invocation.finished(run.runId);
      });
      await invocation.complete();
    } finally {
      await records.close();
    }
  }
  const outDir = resolve(values.out);
  const shownUri = uri.startsWith(ROOT + sep) ? relative(ROOT, uri) : uri;
  await writeReproductionReport({ plan, uri, shownUri, configText, commit }, outDir);
  console.log(`wrote ${join(outDir, 'reproduction.md')}`);
}

/** A store URI as the runs record it: a local path made absolute from the repository, ~ expanded. */
function resolveStore(uri: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith('file://') ? uri : resolve(ROOT, expandHome(uri.replace(/^file:\/\//, ''), '--store'));
}

const program = scriptProgram('experiment:reproduce')
  .description(
    'Runs every arm (aggregate, r3, correctness, r3-filtered) for every seed of scripts/experiment/reproduce.config.json as a trainingRun workflow, then writes <out>/reproduction.md and its charts from the runs\' records. Run it again after an interruption: finished runs are kept, interrupted ones resume from their last checkpoint.',
  )
  .option('--quick', "the config's tiny settings (one seed, a few steps), for CI")
  .addOption(textOption('--out <dir>', 'where the report and charts go').default(join(ROOT, 'reports'), 'reports/'))
  .addOption(textOption('--store <uri>', "the runs' store instead of the config's checkpoint.store"))
  .addOption(textOption('--tag <name>', 'put <name> into every run id: the same settings run afresh instead of being found done'))
  .option('--report-only', 'regenerate the report from the records without running anything')
  .action(main);
runScript('experiment:reproduce', program);
