// Client-side operations on training runs, shared by the `dro` commands and the quickstart: start a run
// from a config file, resume one from its latest valid checkpoint, report its status, and read its
// checkpoints and metrics from its store. A run's store comes from its config: the CLI finds it from the
// run's workflow (memo `store`) while Temporal knows the run, else from --store, $DRO_STORE or ./runs.
import { createHash, randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import proto from '@temporalio/proto';
import { ApplicationFailure, Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { checkpointState, readChangeLog, readEvaluation, readStepMetrics, type CheckpointState, type StepMetricsRecord } from '../activities/records.js';
import { canonicalJson, parseRunConfig, type RunConfig } from '../dro/config.js';
import type { BlobStore } from '../storage/blob-store.js';
import { listCheckpoints, loadLatestCheckpoint, validateRunId, type CheckpointListing } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import type { HyperparameterChange } from '../dro/hyperparameters.js';
import { describeConfigChange, planResume, ResumeConfigError, type ConfigChange, type ResumePlan } from '../dro/resumable.js';
import { temporalTarget, webUiLink } from '../workers/connection.js';
import { missingSearchAttributes, searchAttributeCommands } from '../workers/search-attributes.js';
import { CONTROL_QUEUE, progressQuery, resumeSignal, searchAttributes, trainingWorkflowId, type RunStatus, type TrainingProgress } from '../workflows/messages.js';
import type { trainingRun } from '../workflows/training-run.js';
import { applySettings, readConfigFile, type ConfigSetting } from './config-file.js';

export class RunError extends Error {
  override readonly name = 'RunError';
}

export interface Connected {
  client: Client;
  namespace: string;
  close(): Promise<void>;
}

export async function connectClient(): Promise<Connected> {
  const target = temporalTarget();
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...target.connectionOptions, connectTimeout: '10s' });
  } catch (err) {
    throw new RunError(`cannot reach Temporal at ${target.address}: ${(err as Error).message.split('\n')[0]} (start the local services with \`npm run services:up\`, or set TEMPORAL_ADDRESS)`);
  }
  return { client: new Client({ connection, namespace: target.namespace }), namespace: target.namespace, close: () => connection.close() };
}

/** `~` and `~/x` as the home folder, as a shell would; `~user` is refused (no shell expands it here). */
export function expandHome(path: string, what: string): string {
  if (path === '~' || path.startsWith('~/')) return join(homedir(), path.slice(1));
  if (path.startsWith('~')) throw new RunError(`${what}: ${JSON.stringify(path)}: only ~ and ~/... are expanded; write the path out`);
  return path;
}

/** Store URIs and file paths in a config are made absolute against the caller's directory, so workers elsewhere agree. */
function absolutePaths(raw: Record<string, unknown>, base: string): void {
  const at = (section: string, field: string): void => {
    const s = raw[section] as Record<string, unknown> | undefined;
    let v = s?.[field];
    if (typeof v === 'string' && v !== '') v = s![field] = expandHome(v, `${section}.${field}`);
    if (typeof v === 'string' && v !== '' && !/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && !isAbsolute(v)) s![field] = resolve(base, v);
  };
  at('checkpoint', 'store');
  at('data', 'trainPath');
  at('data', 'evalPath');
  at('model', 'path');
  at('sft', 'demonstrations');
}

/** Reads and validates a run config file (YAML or JSON) with `settings` (--set) over it; every bad field is named. */
export async function readRunConfig(file: string, base = process.cwd(), settings: readonly ConfigSetting[] = []): Promise<RunConfig> {
  let raw: unknown;
  try {
    raw = await readConfigFile(file);
  } catch (err) {
    throw new RunError((err as Error).message);
  }
  return resolveRunConfig(raw, base, settings, file);
}

/** A run config as read from `source` (a file, or nothing: {}), `settings` over it, paths made absolute against `base`, validated. */
export function resolveRunConfig(raw: unknown, base: string, settings: readonly ConfigSetting[], source: string): RunConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new RunError(`${source}: a run config is an object of sections (seed, model, data, ...), in YAML or JSON`);
  const r = raw as Record<string, unknown>;
  applySettings(r, settings);
  r.checkpoint ??= {};
  absolutePaths(r, base);
  // The default store is ./runs of the directory the command runs in (a checkpoint that is no object is parseRunConfig's to name).
  const checkpoint = r.checkpoint;
  if (checkpoint !== null && typeof checkpoint === 'object' && !Array.isArray(checkpoint)) (checkpoint as Record<string, unknown>).store ??= resolve(base, 'runs');
  return parseRunConfig(r);
}

export const configHash = (config: RunConfig): string => createHash('sha256').update(canonicalJson(config)).digest('hex');

export function newRunId(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `run-${t}-${randomBytes(2).toString('hex')}`;
}

export interface StartedRun {
  runId: string;
  workflowId: string;
  link: string;
  handle: WorkflowHandleWithFirstExecutionRunId<typeof trainingRun>;
}

/**
 * An execution of the run's workflow; the store goes into the memo so commands find it by run id.
 * A new run refuses an id Temporal has seen (REJECT_DUPLICATE); a resume reuses a closed one, and of
 * two at once the second fails to start (conflict policy FAIL).
 */
async function startExecution(
  c: Connected,
  runId: string,
  config: RunConfig,
  reuse: 'REJECT_DUPLICATE' | 'ALLOW_DUPLICATE',
  changes: { hyperparameters: HyperparameterChange[]; configChanges: ConfigChange[] } = { hyperparameters: [], configChanges: [] },
) {
  const missing = await missingSearchAttributes(c.client.connection, c.namespace);
  if (missing.length > 0) {
    throw new RunError(`namespace ${c.namespace} lacks the search attributes runs are listed by (${missing.join(', ')}); add them: ${searchAttributeCommands(missing, c.namespace)}`);
  }
  return c.client.workflow.start<typeof trainingRun>('trainingRun', {
    taskQueue: CONTROL_QUEUE,
    workflowId: trainingWorkflowId(runId),
    args: [{ runId, config, configHash: configHash(config), hyperparameters: changes.hyperparameters, ...(changes.configChanges.length > 0 ? { configChanges: changes.configChanges } : {}) }],
    memo: { store: config.checkpoint.store, totalSteps: config.schedule.totalSteps },
    workflowIdReusePolicy: reuse,
    workflowIdConflictPolicy: 'FAIL',
    typedSearchAttributes: [
      { key: searchAttributes.runId, value: runId },
      { key: searchAttributes.task, value: config.data.task },
      { key: searchAttributes.status, value: 'running' },
      { key: searchAttributes.step, value: 0 },
    ],
    ...runSummary(runId, config),
  });
}

/** What the Web UI shows at the top of a run's page (static for the workflow's life). */
export function runSummary(runId: string, config: RunConfig): { staticSummary: string; staticDetails: string } {
  const model = config.model.path ?? `new ${config.model.init.num_hidden_layers ?? '?'}-layer model`;
  const staticSummary = `DRO run ${runId}: ${config.data.task}, ${basename(String(model))}, reward ${config.dro.reward}, ${config.schedule.totalSteps} steps`;
  const staticDetails = [
    `| | |`,
    `|---|---|`,
    `| task | ${config.data.task} |`,
    `| model | ${model} |`,
    `| reward | ${config.dro.reward} (R3 ${config.dro.r3.weighting}, ${config.dro.r3.contrast}) |`,
    `| total steps | ${config.schedule.totalSteps} |`,
    `| prompts × group | ${config.rollout.promptsPerStep} × ${config.rollout.groupSize} |`,
    `| learning rate | ${config.optimizer.learningRate} (${config.schedule.lrSchedule}) |`,
    `| KL β | ${config.dro.klBeta} |`,
    `| checkpoints | every ${config.checkpoint.every} steps in ${config.checkpoint.store} |`,
    `| evaluation | every ${config.evaluation.every || '-'} steps, ${config.evaluation.examples} examples |`,
  ].join('\n');
  return { staticSummary: staticSummary.slice(0, 200), staticDetails };
}

export async function storeFor(uri: string): Promise<BlobStore> {
  try {
    return await openBlobStore(uri);
  } catch (err) {
    throw new RunError(`checkpoint.store ${uri}: ${(err as Error).message}`);
  }
}

/** Starts a new run; refuses a run id that Temporal or the store already knows. */
export async function startRun(c: Connected, config: RunConfig, runId: string): Promise<StartedRun> {
  validateRunId(runId);
  const store = await storeFor(config.checkpoint.store);
  if ((await listCheckpoints(store, runId, { verify: 'size' })).length > 0) {
    throw new RunError(`run ${runId} already has checkpoints in ${config.checkpoint.store}; continue it with \`dro resume --run ${runId}\` or pick another --run-id`);
  }
  const workflowId = trainingWorkflowId(runId);
  try {
    const handle = await startExecution(c, runId, config, 'REJECT_DUPLICATE');
    return { runId, workflowId, link: webUiLink(c.namespace, workflowId), handle };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new RunError(`run ${runId} already exists in Temporal; continue it with \`dro resume --run ${runId}\``);
    throw err;
  }
}

export type RunState = 'running' | 'completed' | 'failed' | 'terminated' | 'cancelled' | 'timed-out' | 'continued-as-new' | 'not-found';

export interface RunDescription {
  state: RunState;
  /** What the run itself last said (DroStatus): running, paused, stopping, stopped, completed, failed. */
  status?: RunStatus;
  store?: string;
  failure?: string;
}

export async function describeRun(c: Connected, runId: string): Promise<RunDescription> {
  const handle = c.client.workflow.getHandle(trainingWorkflowId(runId));
  try {
    const d = await handle.describe();
    const state = (d.status.name.toLowerCase().replace(/_/g, '-') as RunState) ?? 'running';
    const store = typeof d.memo?.store === 'string' ? d.memo.store : undefined;
    const status = d.typedSearchAttributes.get(searchAttributes.status) as RunStatus | undefined;
    let failure: string | undefined;
    if (state === 'failed') failure = await handle.result().then(() => undefined, (err: unknown) => failureMessage(err));
    return { state, status, store, failure };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'not-found' };
    throw err;
  }
}

/**
 * What a workflow failure says to a user: the outermost ApplicationFailure's message (the run's own
 * failure names the step and the cause, e.g. a crash loop's give-up above the timeout that ended its last
 * attempt, or an activity's own words), else the innermost message (a termination's reason).
 */
export function failureMessage(err: unknown): string {
  let e: unknown = err;
  while (!(e instanceof ApplicationFailure) && e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(err);
}

export async function queryProgress(c: Connected, runId: string): Promise<TrainingProgress | undefined> {
  try {
    return await c.client.workflow.getHandle(trainingWorkflowId(runId)).query(progressQuery);
  } catch {
    return undefined;
  }
}

/**
 * How recently a poller must have polled to count as alive: a live worker renews its long poll about
 * every minute, so 90 s by default ($DRO_POLLER_FRESH_SECONDS; tests shorten it to see a worker gone sooner).
 */
function pollerFreshMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.DRO_POLLER_FRESH_SECONDS;
  if (raw === undefined || raw === '') return 90_000;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`DRO_POLLER_FRESH_SECONDS must be a positive number of seconds, got ${JSON.stringify(raw)}`);
  return seconds * 1000;
}

/** The workers polling `queue` for activities now (Temporal's identities), from the server's poller list. */
export async function queuePollers(c: Connected, queue: string): Promise<string[]> {
  const { pollers } = await c.client.workflowService.describeTaskQueue({
    namespace: c.namespace,
    taskQueue: { name: queue },
    taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
  });
  const now = Date.now();
  const fresh = pollerFreshMs();
  return (pollers ?? [])
    .filter((p) => {
      const at = p.lastAccessTime;
      const ms = at ? Number(at.seconds ?? 0) * 1000 + Math.floor((at.nanos ?? 0) / 1e6) : 0;
      return now - ms < fresh;
    })
    .map((p) => p.identity ?? '?')
    .sort();
}

/** The store of a run: --store, else what Temporal recorded (`recorded`), else $DRO_STORE, else ./runs. */
export function runStoreUri(flag: string | undefined, recorded: string | undefined): string {
  if (flag) {
    const path = expandHome(flag, '--store');
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(path) || isAbsolute(path) ? path : resolve(path);
  }
  return recorded ?? process.env.DRO_STORE ?? resolve('runs');
}

/** The store of a run for commands that need only the store: asks Temporal (when reachable) only without --store. */
export async function findRunStore(runId: string, flag: string | undefined): Promise<string> {
  if (flag) return runStoreUri(flag, undefined);
  const c = await connectClient().catch(() => undefined);
  if (!c) return runStoreUri(undefined, undefined);
  try {
    return runStoreUri(undefined, (await describeRun(c, runId).catch(() => undefined))?.store);
  } finally {
    await c.close();
  }
}

export interface ResumeOutcome {
  action: 'already-running' | 'unpaused' | 'completed' | 'resumed' | 'raced';
  message: string;
  from?: number;
  handle?: WorkflowHandle<typeof trainingRun>;
  link?: string;
}

/** Starts a new execution of a run whose workflow is gone, from its latest valid checkpoint. */
export async function resumeRun(c: Connected, runId: string, options: { store?: string; configFile?: string; settings?: readonly ConfigSetting[]; log: (line: string) => void }): Promise<ResumeOutcome> {
  validateRunId(runId);
  const described = await describeRun(c, runId);
  if (described.state === 'running') {
    const progress = await queryProgress(c, runId);
    if (progress?.paused || described.status === 'paused') {
      await c.client.workflow.getHandle(trainingWorkflowId(runId)).signal(resumeSignal);
      return { action: 'unpaused', message: `run ${runId} was paused at step ${progress?.step ?? '?'}; it continues` };
    }
    return { action: 'already-running', message: `run ${runId} is running; nothing to resume` };
  }
  // A run stopped on request completed its workflow but not its steps: it continues from its checkpoint.
  if (described.state === 'completed' && described.status !== 'stopped') return { action: 'completed', message: `run ${runId} completed; nothing to resume` };
  const uri = runStoreUri(options.store, described.store);
  const store = await storeFor(uri);
  const { checkpoint: latest, skipped } = await loadLatestCheckpoint(store, runId);
  for (const bad of skipped) options.log(`checkpoint ${bad.step} is invalid (${bad.reason}); falling back`);
  const state = latest && checkpointState(latest);
  let config: RunConfig;
  let from: number | undefined;
  const changes = await changeLog(store, runId, state);
  if (latest && state) {
    config = parseRunConfig(state.config);
    from = latest.ref.step;
    if (options.configFile) {
      const given = await readRunConfig(options.configFile, process.cwd(), options.settings);
      let plan: ResumePlan;
      try {
        plan = planResume(config, given, from + 1, changes.hyperparameters);
      } catch (err) {
        if (err instanceof ResumeConfigError) throw new RunError(`${options.configFile} differs from checkpoint ${from}'s config: ${err.message}`);
        throw err;
      }
      config = plan.config;
      if (plan.hyperparameters) changes.hyperparameters.push(plan.hyperparameters);
      if (plan.change) {
        changes.configChanges.push(plan.change);
        options.log(`changing from step ${plan.change.fromStep}: ${describeConfigChange(plan.change)}`);
      }
    }
  } else {
    if (!options.configFile) throw new RunError(`run ${runId} has no valid checkpoint in ${uri}${skipped.length ? ` (${skipped.length} invalid)` : ''}; start it again from its config with \`dro resume --run ${runId} --config <file>\``);
    config = await readRunConfig(options.configFile, process.cwd(), options.settings);
  }
  const workflowId = trainingWorkflowId(runId);
  try {
    const handle = await startExecution(c, runId, config, 'ALLOW_DUPLICATE', changes);
    const where = from === undefined ? 'from the beginning (no checkpoint yet)' : `from checkpoint ${from}`;
    return { action: 'resumed', message: `resumed run ${runId} ${where}`, from, handle, link: webUiLink(c.namespace, workflowId) };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { action: 'raced', message: `run ${runId} was resumed by another caller a moment ago; nothing to do` };
    throw err;
  }
}

/** Every change the run accepted (hyper-parameters, and config changes at resumes): its change log, else what its checkpoint recorded. */
async function changeLog(store: BlobStore, runId: string, state: CheckpointState | undefined): Promise<{ hyperparameters: HyperparameterChange[]; configChanges: ConfigChange[] }> {
  const log = await readChangeLog(store, runId);
  return {
    hyperparameters: [...(log ? log.changes : (state?.hyperparameters ?? []))],
    configChanges: [...((log ? log.configChanges : state?.configChanges) ?? [])],
  };
}

export async function runCheckpoints(uri: string, runId: string): Promise<CheckpointListing[]> {
  return listCheckpoints(await storeFor(uri), runId);
}

export async function runMetrics(uri: string, runId: string): Promise<StepMetricsRecord[]> {
  validateRunId(runId);
  return readStepMetrics(await storeFor(uri), runId);
}

export async function runEvaluations(uri: string, runId: string, steps: number[]): Promise<Record<number, Record<string, number>>> {
  const store = await storeFor(uri);
  const out: Record<number, Record<string, number>> = {};
  for (const step of steps) {
    // A step not evaluated (yet) is left out.
    const evaluation = await readEvaluation(store, runId, step);
    if (evaluation) out[step] = evaluation.metrics;
  }
  return out;
}

