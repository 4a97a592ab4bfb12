// `dro pause|stop|set|follow|runs|eval|schedule-eval`: steering a live run (signals and the
// setHyperparameters update), watching it, listing runs through Temporal visibility, and evaluating
// checkpoints on demand or on a Temporal Schedule. (`dro resume` lives with `train` in run.ts.)
import { Option, type Command } from 'commander';
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type ScheduleHandle,
  type SignalDefinition,
  type WorkflowExecutionInfo,
} from '@temporalio/client';
import type { EvaluationOutcome } from '../../activities/types.js';
import type { HyperparameterRequest } from '../../dro/hyperparameters.js';
import { webUiLink } from '../../workers/connection.js';
import type { evaluateCheckpoint } from '../../workflows/evaluate-checkpoint.js';
import {
  CONTROL_QUEUE,
  evaluationScheduleId,
  evaluationWorkflowId,
  pauseSignal,
  searchAttributes,
  setHyperparametersUpdate,
  stopSignal,
  trainingWorkflowId,
  type RunStatus,
  type TrainingProgress,
} from '../../workflows/messages.js';
import { integerOption, jsonOption, numberOption, textOption, UsageError } from '../options.js';
import { describeChange } from '../progress.js';
import { fmt, followUntilEnd, printTable, runOption, storeOption, withClient } from './runs.js';
import { describeRun, failureMessage, queryProgress, RunError, runStoreUri, type Connected, type RunDescription } from '../client.js';

/** The run's workflow, which must exist (and, for steering, be open). */
async function knownRun(c: Connected, runId: string, mustBeOpen: boolean): Promise<RunDescription> {
  const d = await describeRun(c, runId);
  if (d.state === 'not-found') throw new RunError(`run ${runId} is not known to Temporal (namespace ${c.namespace}); \`dro runs\` lists the runs`);
  if (mustBeOpen && d.state !== 'running') throw new RunError(`run ${runId} is not running (${d.status === 'stopped' ? 'stopped' : d.state}); \`dro resume --run ${runId}\` continues it`);
  return d;
}

const DURATION = /^\d+(\.\d+)?(ms|s|m|h|d)$/;

function parseDuration(value: string, flag: string): string {
  if (!DURATION.test(value.trim())) throw new UsageError(`${flag} must be a duration such as 30s, 10m, 2h or 1d, got ${JSON.stringify(value)}`);
  return value.trim();
}

/** The state shown for a run's newest execution: the run's own word while open or when it ended by itself. */
export function runState(info: Pick<WorkflowExecutionInfo, 'status'>, status: RunStatus | undefined): string {
  if (info.status.name === 'RUNNING') return status ?? 'running';
  if (info.status.name === 'COMPLETED') return status === 'stopped' ? 'stopped' : 'completed';
  return info.status.name.toLowerCase().replace(/_/g, '-');
}

export interface RunListing {
  runId: string;
  state: string;
  step: number | null;
  totalSteps: number | null;
  task: string | null;
  reward: number | null;
  started: string;
  workflowId: string;
}

export async function listRuns(c: Connected): Promise<RunListing[]> {
  const newest = new Map<string, WorkflowExecutionInfo>();
  for await (const info of c.client.workflow.list({ query: `WorkflowType = 'trainingRun' AND ExecutionStatus != 'ContinuedAsNew'` })) {
    // A resumed run has older (terminated, stopped) executions under the same id: the newest speaks for it.
    const seen = newest.get(info.workflowId);
    if (!seen || seen.startTime < info.startTime) newest.set(info.workflowId, info);
  }
  return [...newest.values()]
    .sort((a, b) => b.startTime.getTime() - a.startTime.getTime())
    .map((info) => {
      const sa = info.typedSearchAttributes;
      const total = info.memo?.totalSteps;
      return {
        runId: sa.get(searchAttributes.runId) ?? info.workflowId.replace(/^dro-train-/, ''),
        state: runState(info, sa.get(searchAttributes.status) as RunStatus | undefined),
        step: sa.get(searchAttributes.step) ?? null,
        totalSteps: typeof total === 'number' ? total : null,
        task: sa.get(searchAttributes.task) ?? null,
        reward: sa.get(searchAttributes.reward) ?? null,
        started: info.startTime.toISOString(),
        workflowId: info.workflowId,
      };
    });
}

function printEvaluation(runId: string, outcome: EvaluationOutcome): void {
  if (outcome.step === null) return console.log(outcome.message);
  console.log(`run ${runId}, checkpoint ${outcome.step}: ${outcome.examples} held-out examples${outcome.cached ? ' (stored result; nothing computed)' : `, ${outcome.seconds.toFixed(1)} s`}`);
  printTable([['metric', 'value'], ...Object.entries(outcome.metrics).map(([k, v]) => [k, fmt(v)])]);
}

async function scheduleOf(c: Connected, runId: string): Promise<ScheduleHandle> {
  const handle = c.client.schedule.getHandle(evaluationScheduleId(runId));
  try {
    await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new RunError(`run ${runId} has no evaluation schedule; create one with \`dro schedule-eval --run ${runId} --every 30m\``);
    throw err;
  }
  return handle;
}

/** Signals a running run and returns its progress right after (undefined when no worker answers). */
async function signalRun(c: Connected, runId: string, signal: SignalDefinition<[], string>): Promise<TrainingProgress | undefined> {
  await knownRun(c, runId, true);
  await c.client.workflow.getHandle(trainingWorkflowId(runId)).signal(signal);
  return queryProgress(c, runId);
}

export function registerControlCommands(program: Command): void {
  program
    .command('pause')
    .description('hold a run at its next step boundary (it keeps its state and runs no activity); `dro resume` continues it')
    .addOption(runOption())
    .action(async (o: { run: string }) => {
      await withClient(async (c) => {
        const p = await signalRun(c, o.run, pauseSignal);
        console.log(`pause requested: run ${o.run} holds once the step in progress ends${p ? ` (now at step ${p.step}, ${p.phase})` : ''}`);
      });
    });

  program
    .command('stop')
    .description('end a run early: it finishes the step in progress, commits a checkpoint there and ends as stopped')
    .addOption(runOption())
    .action(async (o: { run: string }) => {
      await withClient(async (c) => {
        const p = await signalRun(c, o.run, stopSignal);
        console.log(`stop requested: run ${o.run} ends after the step in progress${p ? ` (now at step ${p.step})` : ''} with a checkpoint; \`dro resume --run ${o.run}\` continues it later`);
      });
    });

  program
    .command('set')
    .description("change a running run's hyper-parameters from its next step (recorded in its state, checkpoints and metrics)")
    .addOption(runOption())
    .addOption(numberOption('--lr <x>', 'peak learning rate (the schedule keeps its shape)'))
    .addOption(numberOption('--kl-beta <x>', 'KL penalty weight β'))
    .addOption(numberOption('--temperature <x>', 'rollout sampling temperature'))
    .addOption(integerOption('--eval-every <n>', 'steps between evaluations (a multiple of checkpoint.every; 0 = off)', 0))
    .addOption(integerOption('--from-step <n>', 'first step the change applies to (default: the next step)', 1))
    .action(async (o: { run: string; lr?: number; klBeta?: number; temperature?: number; evalEvery?: number; fromStep?: number }) => {
      const request: HyperparameterRequest = { learningRate: o.lr, klBeta: o.klBeta, temperature: o.temperature, evaluationEvery: o.evalEvery, fromStep: o.fromStep };
      for (const k of Object.keys(request) as (keyof HyperparameterRequest)[]) if (request[k] === undefined) delete request[k];
      if (Object.keys(request).filter((k) => k !== 'fromStep').length === 0) throw new UsageError('give at least one of --lr, --kl-beta, --temperature, --eval-every');
      await withClient(async (c) => {
        await knownRun(c, o.run, true);
        try {
          const { change, settings } = await c.client.workflow.getHandle(trainingWorkflowId(o.run)).executeUpdate(setHyperparametersUpdate, { args: [request] });
          console.log(`run ${o.run}: from step ${change.fromStep}, ${describeChange(change)}`);
          console.log(`  settings from step ${change.fromStep}: ${describeChange(settings)}`);
        } catch (err) {
          if (err instanceof WorkflowUpdateFailedError) throw new RunError(`run ${o.run} refused the change: ${failureMessage(err)}`);
          throw err;
        }
      });
    });

  program
    .command('follow')
    .description("a run's live progress until it ends; Ctrl-C stops following, never the run")
    .addOption(runOption())
    .action(async (o: { run: string }) => {
      await withClient(async (c) => {
        await knownRun(c, o.run, false);
        await followUntilEnd(c, o.run);
      });
    });

  program
    .command('runs')
    .description('the training runs on this Temporal namespace: state, step, task and reward (Temporal visibility)')
    .addOption(jsonOption())
    .action(async (o: { json: boolean }) => {
      await withClient(async (c) => {
        const runs = await listRuns(c);
        if (o.json) return console.log(JSON.stringify(runs, null, 2));
        if (runs.length === 0) return console.log(`no training runs on namespace ${c.namespace}`);
        printTable([
          ['run', 'state', 'step', 'task', 'reward', 'started'],
          ...runs.map((r) => [r.runId, r.state, r.totalSteps ? `${r.step ?? '-'}/${r.totalSteps}` : fmt(r.step), r.task ?? '-', fmt(r.reward), r.started.replace('T', ' ').slice(0, 19)]),
        ]);
      });
    });

  program
    .command('eval')
    .description("evaluate a run's checkpoint (the newest valid one by default) on its held-out examples, as a workflow of its own")
    .addOption(runOption())
    .addOption(integerOption('--step <n>', 'the checkpoint to evaluate (default: the newest valid one)', 0))
    .addOption(storeOption())
    .addOption(new Option('--wait', 'wait for the result and print the metrics').default(false))
    .action(async (o: { run: string; step?: number; store?: string; wait: boolean }) => {
      await withClient(async (c) => {
        const d = await describeRun(c, o.run);
        if (d.state === 'not-found' && !o.store) throw new RunError(`run ${o.run} is not known to Temporal (namespace ${c.namespace}); give its store with --store`);
        const step = o.step ?? null;
        const workflowId = evaluationWorkflowId(o.run, step);
        // A request for an evaluation already under way joins it.
        const handle = await c.client.workflow.start<typeof evaluateCheckpoint>('evaluateCheckpoint', {
          taskQueue: CONTROL_QUEUE,
          workflowId,
          args: [{ runId: o.run, store: runStoreUri(o.store, d.store), step }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          staticSummary: `evaluation of ${step === null ? 'the newest checkpoint' : `step ${step}`} of run ${o.run}`,
        });
        if (!o.wait) return console.log(`evaluation ${workflowId} started\n  Web UI: ${webUiLink(c.namespace, workflowId)}\n  result: dro eval --run ${o.run}${step === null ? '' : ` --step ${step}`} --wait`);
        try {
          printEvaluation(o.run, await handle.result());
        } catch (err) {
          if (err instanceof WorkflowFailedError) throw new RunError(`evaluation of run ${o.run} failed: ${failureMessage(err)}`);
          throw err;
        }
      });
    });

  program
    .command('schedule-eval')
    .description("evaluate a run's newest checkpoint on a Temporal Schedule (a firing that finds no new checkpoint computes nothing)")
    .addOption(textOption('--run <id>', 'the run id (required except with --list)'))
    .addOption(new Option('--every <duration>', 'interval, e.g. 30m or 2h').argParser((v) => parseDuration(v, '--every')))
    .addOption(textOption('--cron <expr>', 'cron expression, e.g. "0 * * * *"'))
    .addOption(storeOption())
    .addOption(new Option('--list', 'list the evaluation schedules').default(false))
    .addOption(new Option('--pause', "pause the run's schedule").default(false))
    .addOption(new Option('--unpause', "unpause the run's schedule").default(false))
    .addOption(new Option('--trigger', "fire the run's schedule once now").default(false))
    .addOption(new Option('--delete', "delete the run's schedule").default(false))
    .addOption(jsonOption())
    .action(async (o: { run?: string; every?: string; cron?: string; store?: string; list: boolean; pause: boolean; unpause: boolean; trigger: boolean; delete: boolean; json: boolean }) => {
      const actions = (['every', 'cron', 'list', 'pause', 'unpause', 'trigger', 'delete'] as const).filter((k) => o[k] !== undefined && o[k] !== false);
      if (actions.length !== 1) throw new UsageError(`give exactly one of --every, --cron, --list, --pause, --unpause, --trigger, --delete${actions.length ? ` (got ${actions.map((a) => `--${a}`).join(', ')})` : ''}`);
      const action = actions[0]!;
      if (action !== 'list' && !o.run) throw new UsageError(`--${action} needs --run <id>`);
      await withClient(async (c) => {
        if (action === 'list') {
          const rows = [];
          for await (const s of c.client.schedule.list()) {
            if (!s.scheduleId.startsWith(evaluationScheduleId(''))) continue;
            const runId = s.scheduleId.slice(evaluationScheduleId('').length);
            if (o.run && runId !== o.run) continue;
            const d = await c.client.schedule.getHandle(s.scheduleId).describe();
            // The server keeps a cron expression as calendar specs.
            const spec = [...(d.spec.intervals ?? []).map((i) => `every ${String(i.every)}`), ...(d.spec.calendars?.length ? ['calendar (cron)'] : [])].join(', ') || '-';
            rows.push({ scheduleId: s.scheduleId, runId, spec, paused: d.state.paused, actions: d.info.numActionsTaken, skipped: d.info.numActionsSkippedOverlap, next: d.info.nextActionTimes[0]?.toISOString() ?? null });
          }
          if (o.json) return console.log(JSON.stringify(rows, null, 2));
          if (rows.length === 0) return console.log('no evaluation schedules');
          return printTable([['run', 'schedule', 'paused', 'fired', 'skipped', 'next'], ...rows.map((r) => [r.runId, r.spec, r.paused ? 'yes' : 'no', r.actions, r.skipped, r.next ?? '-'])]);
        }
        const runId = o.run!;
        if (action === 'every' || action === 'cron') {
          const d = await knownRun(c, runId, false);
          const store = runStoreUri(o.store, d.store);
          try {
            await c.client.schedule.create({
              scheduleId: evaluationScheduleId(runId),
              spec: action === 'every' ? { intervals: [{ every: o.every! }] } : { cronExpressions: [o.cron!] },
              action: {
                type: 'startWorkflow',
                workflowType: 'evaluateCheckpoint',
                taskQueue: CONTROL_QUEUE,
                workflowId: `dro-eval-scheduled-${runId}`,
                args: [{ runId, store, step: null }],
                staticSummary: `scheduled evaluation of the newest checkpoint of run ${runId}`,
              },
              // A firing while the last evaluation still runs is skipped, never queued.
              policies: { overlap: 'SKIP', catchupWindow: '1 minute' },
            });
          } catch (err) {
            if (err instanceof ScheduleAlreadyRunning) throw new RunError(`run ${runId} already has an evaluation schedule; \`dro schedule-eval --run ${runId} --delete\` first to change it`);
            if (err instanceof Error && /cron|invalid/i.test(err.message)) throw new RunError(`--cron ${JSON.stringify(o.cron)}: ${err.message.split('\n')[0]}`);
            throw err;
          }
          return console.log(`evaluation schedule ${evaluationScheduleId(runId)}: the newest checkpoint of run ${runId} ${action === 'every' ? `every ${o.every}` : `on cron "${o.cron}"`}`);
        }
        const handle = await scheduleOf(c, runId);
        if (action === 'pause') await handle.pause('paused with dro schedule-eval --pause');
        if (action === 'unpause') await handle.unpause('unpaused with dro schedule-eval --unpause');
        if (action === 'trigger') await handle.trigger('SKIP');
        if (action === 'delete') await handle.delete();
        console.log(`evaluation schedule of run ${runId}: ${{ pause: 'paused', unpause: 'unpaused', trigger: 'fired once', delete: 'deleted' }[action]}`);
      });
    });

}
