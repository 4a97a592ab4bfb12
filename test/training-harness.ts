// Test harness for training runs against real servers: private Temporal and SeaweedFS instances on
// their own ports and data (so a test may stop, restart or wipe them), worker processes started with
// `dro worker` and killed by their PID (a keeper restarts the policy worker when one dies), the run
// configs the tests share, one poller with deadlines sized to the work awaited, and the digests and
// metrics that runs are compared by.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { createActivities } from '../activities/index.js';
import type { LoopPosition, RunRef } from '../activities/types.js';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../dro/config.js';
import { servicesConfig, servicesDown, servicesUp, type ServiceName, type ServicesConfig } from '../scripts/services/dev-services.js';
import { configHash, runMetrics, type Connected } from '../cli/client.js';
import { overlay } from '../scripts/experiment/plan.js';
import { openBlobStore } from '../storage/open.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { withFreshPorts } from './net.js';

import { WorkerProcess } from '../scripts/lib/worker-process.js';

export { WorkerProcess };

export interface PrivateServices {
  cfg: ServicesConfig;
  env: Record<string, string>;
  up(which?: ServiceName[]): Promise<void>;
  down(which?: ServiceName[]): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * Temporal (and SeaweedFS when asked) of this test file alone, on ports nobody else holds (chosen afresh
 * when another process takes one while they start); their variables are copied into process.env.
 */
export async function privateServices(label: string, which: ServiceName[]): Promise<PrivateServices> {
  const log = (line: string): void => console.log(`[${label} services] ${line}`);
  // A fresh data folder per attempt: nothing of a start that lost its ports is carried into the next.
  const { dataDir, cfg, env } = await withFreshPorts(async (ports) => {
    const dataDir = await mkdtemp(join(tmpdir(), `dro-${label}-`));
    const cfg = servicesConfig({ ...process.env, ...ports, DRO_DATA_DIR: dataDir });
    try {
      return { dataDir, cfg, env: await servicesUp(cfg, which, log) };
    } catch (err) {
      await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
  });
  Object.assign(process.env, env, { DRO_DATA_DIR: dataDir });
  return {
    cfg,
    env: { ...env, DRO_DATA_DIR: dataDir },
    up: async (w = which) => void (await servicesUp(cfg, w, log)),
    down: (w = which) => servicesDown(cfg, w, log),
    dispose: async () => {
      await servicesDown(cfg, which, log);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function connect(address: string): Promise<Connected> {
  const connection = await Connection.connect({ address });
  return { client: new Client({ connection }), namespace: 'default', close: () => connection.close() };
}

/**
 * The small synthetic run every training test starts from (2-digit sums, 16 training and 4 held-out
 * examples, 2 prompts a step, KL weight 0.01), checkpointed to `store`; `overrides` laid over it field by
 * field (objects merged, anything else replaced), so a test states only what it is about.
 */
export function tinyRunInput(store: string, overrides: RunConfigInput = {}): RunConfigInput {
  const tiny = { data: { synthetic: { digits: 2, trainCount: 16, evalCount: 4 } }, rollout: { promptsPerStep: 2 }, dro: { klBeta: 0.01 }, checkpoint: { store } };
  return overlay(tiny, overrides);
}

/** `tinyRunInput` validated: the `RunConfig` a run starts with. */
export function tinyRunConfig(store: string, overrides: RunConfigInput = {}): RunConfig {
  return parseRunConfig(tinyRunInput(store, overrides));
}

/** What the activities are given for a run: its id, its config and the config's hash. */
export function runRefOf(runId: string, config: RunConfig): RunRef {
  return { runId, config, configHash: configHash(config) };
}

/**
 * One real DRO step of `run` through the activities a policy worker runs, in this process, after the caller's
 * loadPolicy: warm start, rollouts, reference scores, rewards, one update (which must apply), checkpoint 1;
 * with `checkpointBase` also checkpoint 0 (a full model's is large: skip it when nothing reads it).
 */
export async function stepThroughActivities(acts: ReturnType<typeof createActivities>, run: RunRef, options: { checkpointBase: boolean }): Promise<LoopPosition> {
  await acts.warmStart(run);
  const cursor = await acts.initialCursor(run);
  if (options.checkpointBase) await acts.saveCheckpoint(run, { step: 0, cursor, subsetVersion: 0 });
  const batch = await acts.sampleBatch(run, { cursor, subsetVersion: 0 });
  await acts.rollout(run, { step: 1, exampleIds: batch.exampleIds });
  await acts.scoreReference(run, { step: 1 });
  await acts.computeRewards(run, { step: 1 });
  const update = await acts.update(run, { step: 1 });
  if (!update.applied) throw new Error(`the update of run ${run.runId} applied nothing`);
  const position = { step: 1, cursor: batch.cursor, subsetVersion: 0 };
  await acts.saveCheckpoint(run, position);
  return position;
}

/**
 * A new model of 128 wide layers, for the runs on real servers: wide enough that a change applied a step
 * late shows in the last bits of the weights, small enough for CI.
 */
export function wideModel(layers: number): Record<string, number | boolean> {
  return { vocab_size: 260, hidden_size: 128, intermediate_size: 344, num_hidden_layers: layers, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, max_position_embeddings: 512, attention_bias: false };
}

/**
 * Keeps one policy worker running, as a process supervisor would: when it dies (a fault or a test killed
 * it), another starts with the same environment. Every worker it started stays in `all`, in order.
 */
export class PolicyKeeper {
  readonly all: WorkerProcess[] = [];
  private stopped = false;
  private starting: Promise<unknown> = Promise.resolve();

  private constructor(private readonly env: Record<string, string>) {}

  /** Starts the first worker with `env` (the services' variables and any fault plan) and keeps one running. */
  static async start(env: Record<string, string>): Promise<PolicyKeeper> {
    const keeper = new PolicyKeeper(env);
    await keeper.next();
    return keeper;
  }

  /** The newest worker (the one running, unless it just died and its successor is starting). */
  get current(): WorkerProcess {
    return this.all.at(-1)!;
  }

  /** Workers started after the first. */
  get restarts(): number {
    return this.all.length - 1;
  }

  private next(): Promise<WorkerProcess> {
    const started = WorkerProcess.start('policy', this.env).then((worker) => {
      this.all.push(worker);
      void worker.exited.then(() => {
        if (!this.stopped) void this.next().catch(() => undefined);
      });
      return worker;
    });
    this.starting = started.catch(() => undefined);
    return started;
  }

  /** Stops restarting, waits for a start in progress, and stops every worker still running (SIGTERM by PID). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting;
    await Promise.all(this.all.map((w) => w.kill('SIGTERM')));
  }
}

/** Orchestration for runs whose policy worker a test kills: a dead worker is noticed within seconds. */
export const QUICK_FAILOVER = { heartbeatSeconds: 3, pinnedStartSeconds: 4 } as const;

export interface WaitOptions {
  everyMs?: number;
  /** More to say when the deadline passes, e.g. the last output of the process waited on. */
  context?: () => string;
}

/**
 * Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; a check that throws counts
 * as not yet (a server restarting), and its last error is in the timeout's message. Give a deadline sized to
 * what is awaited (`trainingDeadlineMs` for training work).
 */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, options: WaitOptions = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    let value: T | undefined;
    try {
      value = await check();
    } catch (err) {
      lastError = err;
    }
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : `; the last check failed: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`;
      const context = options.context ? `\n${options.context()}` : '';
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${why}${context}`);
    }
    await new Promise((r) => setTimeout(r, options.everyMs ?? 250));
  }
}

/**
 * Checks every `everyMs` for `ms` that `check` still holds (it throws, e.g. an expect, when it does not):
 * an absence proved by watching, failing at the first sign of what must not happen. Size `ms` to what it
 * must outlast (a few steps, a few schedule intervals).
 */
export async function holdsFor(ms: number, check: () => void | Promise<void>, everyMs = 500): Promise<void> {
  const until = Date.now() + ms;
  do {
    await check();
    await new Promise((r) => setTimeout(r, everyMs));
  } while (Date.now() < until);
  await check();
}

/**
 * A deadline for training work on the private servers, from how much of it is awaited: a bound for
 * starting (worker processes, engine threads, a run's warm start, a server restarting) and one per
 * training step of the test models (rollout, scoring, update, checkpoint, or a step replayed after a
 * rewind). A step took about 4 s with other suites on the same 2 cores (lora-faults: 12 steps, 3 kills and
 * their replays in 50 s), so the bounds let a much busier machine slow a test down without failing it,
 * while a run that hangs still fails with what it was waiting for.
 */
export function trainingDeadlineMs(steps: number): number {
  return TRAINING_START_MS + steps * TRAINING_STEP_MS;
}
const TRAINING_START_MS = 120_000;
const TRAINING_STEP_MS = 30_000;

export interface RunDigest {
  /** sha256 of the trained weights: model.safetensors, or a LoRA run's adapter_model.safetensors. */
  model: string;
  optimizer: string;
  /** Per step, every metric except `timing`. */
  metrics: unknown[];
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function runDigest(storeUri: string, runId: string, step: number): Promise<RunDigest> {
  const store = await openBlobStore(storeUri);
  const checkpoint = await loadCheckpoint(store, runId, step);
  const metrics = (await runMetrics(storeUri, runId)).map(({ timing: _timing, ...rest }) => rest);
  const weights = checkpoint.files['model.safetensors'] ?? checkpoint.files['adapter_model.safetensors']!;
  return { model: sha(weights), optimizer: sha(checkpoint.files['optimizer.safetensors']!), metrics };
}

/**
 * Reads every history on the namespace: how many there are, the largest activity payload (inputs,
 * results, and local activities' markers), and whether `secret` appears in any of them.
 */
export async function historyPayloads(c: Connected, secret: string): Promise<{ histories: number; largest: number; secretFound: boolean }> {
  let histories = 0;
  let largest = 0;
  let secretFound = false;
  for await (const w of c.client.workflow.list()) {
    const history = await c.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    histories++;
    if (JSON.stringify(temporal.api.history.v1.History.toObject(temporal.api.history.v1.History.fromObject(history), { bytes: String })).includes(secret)) secretFound = true;
    for (const e of history.events ?? []) {
      const payloads = [
        ...(e.activityTaskScheduledEventAttributes?.input?.payloads ?? []),
        ...(e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
        // Local activities' inputs and results are recorded in markers.
        ...Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((d) => d.payloads ?? []),
      ];
      for (const p of payloads) largest = Math.max(largest, p.data?.length ?? 0);
    }
  }
  return { histories, largest, secretFound };
}
