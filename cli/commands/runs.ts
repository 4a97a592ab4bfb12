// `dro train|status|resume|checkpoints|metrics|worker`: start and follow training runs on Temporal,
// resume them from their latest valid checkpoint, inspect what their store holds, and run workers.
import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import type { StepMetricsRecord } from '../../activities/records.js';
import { runWorkers, type WorkerRole } from '../../workers/run-workers.js';
import { trainingWorkflowId, UNITS_QUEUE, type TrainingProgress } from '../../workflows/messages.js';
import { integerOption, jsonOption, parseGiB, parseInteger, textOption, UsageError, withParser } from '../options.js';
import { DEFAULT_BUDGET_SHARE } from '../../activities/memory-budget.js';
import { webUiLink } from '../../workers/connection.js';
import { describeChange, followRun, formatDuration } from '../progress.js';
import { readCommandConfig } from './config.js';
import { requireCleanData } from './data.js';
import { setOption, type ConfigSetting } from '../config-file.js';
import { exportCheckpointModel } from '../checkpoint-model.js';
import {
  connectClient,
  describeRun,
  findRunStore,
  failureMessage,
  newRunId,
  queryProgress,
  queuePollers,
  resumeRun,
  runCheckpoints,
  runMetrics,
  runStoreUri,
  startRun,
  type Connected,
} from '../client.js';

export const runOption = () => textOption('--run <id>', 'the run id (printed by `dro train`)').makeOptionMandatory();
export const storeOption = () => textOption('--store <uri>', "the run's store when Temporal no longer knows the run (default: what Temporal recorded, else $DRO_STORE, else ./runs)");
const followOption = () => new Option('--follow', 'show live progress until the run ends (exit 0 if it completed or was stopped); Ctrl-C stops following, not the run').default(false);

export async function withClient<T>(fn: (c: Connected) => Promise<T>): Promise<T> {
  const c = await connectClient();
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Follows the run until it ends (non-zero unless it completed or was stopped) or until Ctrl-C (the run goes on). */
export async function followUntilEnd(c: Connected, runId: string): Promise<void> {
  const handle = c.client.workflow.getHandle(trainingWorkflowId(runId));
  try {
    // Only what is wrong: a follow that names the healthy workers every few seconds would bury the progress.
    const warnings = async (p: TrainingProgress | undefined): Promise<string[]> => {
      const pollers = await servingPollers(c, p?.policyWorker ?? null);
      return pollerLines(pollers, p?.policyWorker ?? null).filter((l) => /^no |^nobody /.test(l));
    };
    const outcome = await followRun(handle, process.stderr, warnings);
    if (!outcome.ended) return console.log(`stopped following run ${runId}; it goes on (\`dro follow --run ${runId}\` to watch again)`);
    const r = outcome.result;
    console.log(r.status === 'stopped' ? `run ${runId} stopped at step ${r.steps} (checkpoint ${r.lastCheckpoint}); \`dro resume --run ${runId}\` continues it` : `run ${runId} completed`);
  } catch (err) {
    const why = err instanceof WorkflowFailedError ? failureMessage(err) : (err as Error).message;
    throw new Error(`run ${runId} did not complete: ${why}`, { cause: err });
  }
}

export function printTable(rows: (string | number)[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((v, i) => String(v).padStart(widths[i]!)).join('  '));
}

export const fmt = (v: unknown, digits = 4): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : typeof v === 'string' ? v : '-');

/** The workers polling the units queue and the run's pinned queue now. */
async function servingPollers(c: Connected, pinnedQueue: string | null): Promise<{ units: string[]; pinned: string[] | null }> {
  return { units: await queuePollers(c, UNITS_QUEUE), pinned: pinnedQueue ? await queuePollers(c, pinnedQueue) : null };
}

/** What `dro status` says about the workers serving a run, a warning first when nobody does. */
export function pollerLines(pollers: { units: string[]; pinned: string[] | null }, pinnedQueue: string | null): string[] {
  const lines = [];
  if (pollers.units.length === 0) lines.push(`no policy worker polls ${UNITS_QUEUE}: the run's units wait until one starts (\`dro worker --role policy\`)`);
  else lines.push(`${pollers.units.length} policy worker${pollers.units.length === 1 ? '' : 's'} poll${pollers.units.length === 1 ? 's' : ''} ${UNITS_QUEUE}: ${pollers.units.join(', ')}`);
  if (pinnedQueue && pollers.pinned?.length === 0) lines.push(`nobody polls the pinned worker's queue ${pinnedQueue}: once orchestration.pinnedStartSeconds pass, the run pins another worker and rewinds to its latest checkpoint`);
  return lines;
}

export function registerRunCommands(program: Command): void {
  program
    .command('train')
    .description('validate a run config and start the run on Temporal (workers: `dro worker`)')
    .addOption(textOption('--config <file>', 'run config (YAML or JSON); every field and its default: `dro config fields`, README "Run configuration"').makeOptionMandatory())
    .addOption(setOption())
    .addOption(textOption('--run-id <id>', 'name of the run (default: run-<date>-<time>-<hex>); a name, not a seed'))
    .addOption(followOption())
    .action(async (o: { config: string; set?: ConfigSetting[]; runId?: string; follow: boolean }) => {
      const config = await readCommandConfig(o.config, o.set);
      await requireCleanData(config, o.config, (line) => console.error(line));
      const runId = o.runId ?? newRunId();
      await withClient(async (c) => {
        const started = await startRun(c, config, runId);
        console.log(`started run ${runId} (workflow ${started.workflowId})\n  Web UI: ${started.link}\n  store:  ${config.checkpoint.store}`);
        if (o.follow) await followUntilEnd(c, runId);
      });
    });

  program
    .command('status')
    .description("a run's state, step, phase, last checkpoint and recent metrics")
    .addOption(runOption())
    .addOption(storeOption())
    .addOption(jsonOption())
    .action(async (o: { run: string; store?: string; json: boolean }) => {
      await withClient(async (c) => {
        const d = await describeRun(c, o.run);
        const progress: TrainingProgress | undefined = d.state === 'running' ? await queryProgress(c, o.run) : undefined;
        const uri = runStoreUri(o.store, d.store);
        const checkpoints = await runCheckpoints(uri, o.run).catch(() => []);
        const metrics = await runMetrics(uri, o.run).catch((): StepMetricsRecord[] => []);
        const lastValid = checkpoints.filter((x) => x.valid).at(-1)?.step ?? null;
        // Who serves the run now, by the server's poller lists: a run whose units or pinned queue nobody polls waits.
        const pollers = d.state === 'running' ? await servingPollers(c, progress?.policyWorker ?? null) : null;
        const status = {
          runId: o.run,
          workflowId: trainingWorkflowId(o.run),
          state: d.state,
          status: progress?.status ?? d.status ?? null,
          link: webUiLink(c.namespace, trainingWorkflowId(o.run)),
          policyWorker: progress?.policyWorker ?? null,
          step: progress?.step ?? metrics.at(-1)?.step ?? (lastValid ?? 0),
          totalSteps: progress?.totalSteps ?? null,
          phase: progress?.phase ?? null,
          lastCheckpoint: progress?.lastCheckpoint ?? lastValid,
          recentMetrics: metrics.slice(-5),
          failure: d.failure ?? null,
          stepsPerHour: progress?.stepsPerHour ?? null,
          etaSeconds: progress?.etaSeconds ?? null,
          hyperparameters: progress?.hyperparameters ?? [],
          notes: progress?.notes ?? [],
          evaluations: progress?.evaluations ?? {},
          workers: progress?.workers ?? [],
          pollers,
          store: uri,
        };
        if (o.json) return console.log(JSON.stringify(status, null, 2));
        const shown = status.status && status.status !== status.state ? `${status.state} (${status.status})` : status.state;
        console.log(`run ${status.runId} (workflow ${status.workflowId}): ${shown}`);
        console.log(`  Web UI: ${status.link}`);
        console.log(`  step ${status.step}${status.totalSteps ? ` of ${status.totalSteps}` : ''}${status.phase ? `, ${status.phase}` : ''}; last checkpoint ${fmt(status.lastCheckpoint)}`);
        if (status.stepsPerHour) console.log(`  ${status.stepsPerHour.toFixed(0)} steps/h, ETA ${formatDuration(status.etaSeconds)}`);
        for (const h of status.hyperparameters) console.log(`  change from step ${h.fromStep}: ${describeChange(h)}`);
        if (status.failure) console.log(`  failure: ${status.failure}`);
        for (const n of status.notes) console.log(`  note: ${n}`);
        if (pollers) for (const line of pollerLines(pollers, status.policyWorker)) console.log(`  ${line}`);
        for (const w of status.workers) console.log(`  worker ${w.worker}: ${w.units} units, the last at step ${w.lastStep} (${w.fingerprint})`);
        for (const m of status.recentMetrics) console.log(`  step ${m.step}: reward ${fmt(m.reward.mean)} loss ${fmt(m.loss)}`);
      });
    });

  program
    .command('resume')
    .description("continue a run: unpause a paused one, or start one whose workflow ended (stopped, terminated, failed, or lost with Temporal's data) again from its latest valid checkpoint")
    .addOption(runOption())
    .addOption(storeOption())
    .addOption(
      textOption(
        '--config <file>',
        "the run's config (YAML or JSON), checked against the checkpoint's: operational fields and hyper-parameters may change from the resumed step, any other change is refused, naming the field and the fields that may change; needed when no checkpoint exists yet",
      ),
    )
    .addOption(setOption())
    .addOption(followOption())
    .action(async (o: { run: string; store?: string; config?: string; set?: ConfigSetting[]; follow: boolean }) => {
      if (o.set && o.config === undefined) throw new UsageError('--set changes fields of --config <file>; give the file too (without it, resume runs with the checkpoint\'s config)');
      // A bad file is named before anything reaches Temporal, as `dro train` does.
      if (o.config !== undefined) await readCommandConfig(o.config, o.set);
      await withClient(async (c) => {
        const outcome = await resumeRun(c, o.run, { store: o.store, configFile: o.config, settings: o.set, log: (line) => console.log(line) });
        console.log(outcome.message);
        if (outcome.link) console.log(`  Web UI: ${outcome.link}`);
        if (o.follow && outcome.action !== 'completed') await followUntilEnd(c, o.run);
      });
    });

  program
    .command('checkpoints')
    .description("every checkpoint of a run in its store, valid or invalid with the reason; with --export, one checkpoint's files written out")
    .addOption(runOption())
    .addOption(storeOption())
    .addOption(jsonOption())
    .addOption(
      textOption(
        '--export <step>',
        'write checkpoint <step> ("latest": the newest valid one) into --out as a Hugging Face model directory: config.json, model.safetensors, generation_config.json, the tokenizer files of the run\'s model (or a note on the byte tokenizer) and state.json; a LoRA run as a PEFT adapter directory (adapter_model.safetensors, adapter_config.json), or with --merged the merged full model',
      ).implies({ json: false }),
    )
    .addOption(textOption('--out <dir>', 'with --export: the directory to write; must not exist yet'))
    .addOption(new Option('--dtype <dtype>', 'with --export: the weights as trained (float32) or converted').choices(['float32', 'bf16', 'f16']).default('float32'))
    .addOption(new Option('--merged', "with --export of a LoRA run: merge the adapters into the base (read from the run's model.path) and write a full model").default(false))
    .action(async (o: { run: string; store?: string; json: boolean; export?: string; out?: string; dtype: 'float32' | 'bf16' | 'f16'; merged: boolean }) => {
      const uri = await findRunStore(o.run, o.store);
      if (o.export !== undefined) {
        if (o.out === undefined) throw new UsageError('--export needs --out <dir>');
        const step = o.export === 'latest' ? 'latest' : parseInteger(o.export, '--export', 0);
        const dtype = o.dtype === 'bf16' ? 'bfloat16' : o.dtype === 'f16' ? 'float16' : 'float32';
        const done = await exportCheckpointModel(uri, o.run, step, o.out, { dtype, merged: o.merged });
        console.log(`wrote checkpoint ${done.step} of run ${o.run} to ${o.out}: ${done.files.join(', ')}`);
        if (done.files.includes('TOKENIZER.md')) console.log(`the run used the byte tokenizer (no tokenizer.json): ${o.out}/TOKENIZER.md says how to use it`);
        return;
      }
      if (o.merged || o.dtype !== 'float32') throw new UsageError('--merged and --dtype are for --export <step>');
      if (o.out !== undefined) throw new UsageError('--out is for --export <step>');
      const list = await runCheckpoints(uri, o.run);
      if (o.json) return console.log(JSON.stringify(list, null, 2));
      if (list.length === 0) return console.log(`run ${o.run} has no checkpoints in ${uri}`);
      printTable([['step', 'valid', 'reason'], ...list.map((l) => [l.step, l.valid ? 'yes' : 'no', l.reason ?? ''])]);
    });

  program
    .command('metrics')
    .description("a run's per-step metrics, in step order")
    .addOption(runOption())
    .addOption(storeOption())
    .addOption(jsonOption())
    .action(async (o: { run: string; store?: string; json: boolean }) => {
      const uri = await findRunStore(o.run, o.store);
      const rows = await runMetrics(uri, o.run);
      if (o.json) return console.log(JSON.stringify(rows, null, 2));
      if (rows.length === 0) return console.log(`run ${o.run} has no metrics in ${uri}`);
      printTable([
        ['step', 'reward', 'loss', 'kl', 'gradNorm', 'len', 'trunc', 'skipped', 'lr', 'seconds'],
        ...rows.map((m) => {
          const t = Object.values(m.timing).reduce((a, b) => a + b, 0);
          return [m.step, fmt(m.reward.mean), fmt(m.loss), fmt(m.kl, 6), fmt(m.gradNorm), fmt(m.completionTokens, 1), fmt(m.truncatedShare, 2), fmt(m.skippedGroupShare, 2), fmt(m.learningRate, 6), t.toFixed(1)];
        }),
      ]);
    });

  program
    .command('worker')
    .description('run workers until SIGINT/SIGTERM: control (workflows, light activities), policy (the engine), or all in one process')
    .addOption(new Option('--role <role>', 'which worker to run').choices(['control', 'policy', 'all']).default('all'))
    .option('--exit-with-parent', 'shut down when the process that started this worker ends (for scripts that start a worker of their own)', false)
    .addOption(
      withParser(
        '--memory <GiB>',
        `memory the runs pinned to a policy worker may plan to use together: it refuses a pin (the run pins another worker) when the run's estimated peak (rollout, scoring or update, README "Memory") would pass it beside the runs it hosts, and a run that alone is larger fails when it loads, naming the fields to lower (default: ${DEFAULT_BUDGET_SHARE * 100}% of this machine's memory, or of its cgroup limit)`,
        parseGiB,
      ),
    )
    .addOption(integerOption('--max-runs <n>', 'most runs pinned to this policy worker at once; it computes any run\'s units whatever the number (default: as many as --memory and --threads allow)', 1))
    .addOption(integerOption('--threads <n>', `intra-op threads the runs pinned to this policy worker may use together (each run keeps its model.intraOpThreads, which results depend on); this machine has ${availableParallelism()} cores (default: no limit)`, 1))
    .action(async (o: { role: WorkerRole; exitWithParent: boolean; memory?: number; maxRuns?: number; threads?: number }) => {
      const limits = { ...(o.memory === undefined ? {} : { memoryBytes: o.memory }), ...(o.maxRuns === undefined ? {} : { maxRuns: o.maxRuns }), ...(o.threads === undefined ? {} : { threads: o.threads }) };
      await runWorkers({ role: o.role, exitWithParent: o.exitWithParent, limits, onReady: (info) => console.log(`worker ${info.identity} ready${info.policyQueue ? ` (policy queue ${info.policyQueue})` : ''}`) });
    });
}
