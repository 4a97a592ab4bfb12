// Activities that move a run's policy state onto, through and off a policy worker: pinning a worker,
// loading the latest valid checkpoint (or a fresh model), the supervised warm start, and committing a
// checkpoint with retention. Checkpoints hold everything a rewind needs (docs/architecture.md, "Checkpoints"); a LoRA run's hold
// the adapters in PEFT's layout (adapter_model.safetensors, adapter_config.json) and their optimizer
// state instead of the model, with the sha256 of the base they belong to.
import { hostname } from 'node:os';
import { parseRunConfig, type RunConfig } from '../dro/config.js';
import { unresumableDifferences } from '../dro/resumable.js';
import { initialCursor, DataSampler } from '../datasets/sampler.js';
import { loadDemonstrations, syntheticDemonstrations } from '../datasets/demonstrations.js';
import type { SyntheticExample } from '../datasets/synthetic.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterConfigJson, fingerprintDifferences, runtimeFingerprint, WEIGHTS_FILE, trainStepOptionsOf, type EngineClient, type TrainSequence } from '../engine/index.js';
import type { BlobStore } from '../storage/blob-store.js';
import { applyRetention, commitCheckpoint, CheckpointError, loadCheckpoint, loadLatestCheckpoint } from '../storage/checkpoints.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import { failure } from './errors.js';
import { withUploadFault, type FaultPlan } from './faults.js';
import { checkpointState, CHECKPOINT_STATE_VERSION, readSubsetRecord, type CheckpointState } from './records.js';
import type { PolicyHost } from './policy-host.js';
import { requireHost, versionOf } from './policy-host.js';
import { runData, type RunData } from './run-data.js';
import type { CheckpointSummary, LoadPolicyResult, LoopPosition, PinResult, RunRef, WarmStartResult } from './types.js';

export const BASE_STEP = 0;

/** The checkpoint file of the trained weights: the model, or under LoRA its adapters. */
export const trainedWeightsFile = (config: RunConfig): string => (config.model.loraRank > 0 ? ADAPTER_WEIGHTS_FILE : WEIGHTS_FILE);

/**
 * A LoRA checkpoint's adapters mean something only on the base they were trained on: the engine's base
 * (model.path, or the model initialised from the seed) must be the one the checkpoint records.
 */
export async function checkLoraBase(engine: EngineClient, state: CheckpointState, what: string): Promise<void> {
  if (!state.loraBase) throw failure('InvalidData', `${what} holds LoRA adapters but does not record the base model they belong to`);
  const now = await engine.baseDigest();
  if (state.loraBase.sha256 !== now) {
    const where = state.config.model.path === null ? 'the model initialised from model.init and the seed' : `model.path (${state.config.model.path})`;
    throw failure(
      'InvalidConfig',
      `${what} holds LoRA adapters trained on a base whose weights have sha256 ${state.loraBase.sha256.slice(0, 12)}, but ${where} now gives weights with sha256 ${now.slice(0, 12)}: the adapters belong to another base; restore that model or start a new run`,
    );
  }
}

/** Subset version 0 is the whole training pool; later versions are written by filtering rounds. */
export async function readSubset(store: BlobStore, data: RunData, runId: string, version: number, signal?: AbortSignal): Promise<string[]> {
  if (version === 0) return [...data.train.keys()].sort();
  return (await readSubsetRecord(store, runId, version, signal)).subset;
}

/** The config changes of a run's resumes in effect at `step`, as a checkpoint's state records them (nothing when there are none). */
function configChangesAt(run: RunRef, step: number): Pick<CheckpointState, 'configChanges'> {
  const changes = (run.configChanges ?? []).filter((c) => c.fromStep <= step);
  return changes.length > 0 ? { configChanges: changes } : {};
}

/** A checkpoint's config with today's defaults filled in (a field added since it was written has its default). */
function parseCheckpointConfig(config: unknown, step: number): RunConfig {
  try {
    return parseRunConfig(config);
  } catch (err) {
    throw failure('InvalidData', `checkpoint ${step}'s config is no longer valid: ${(err as Error).message}`, err);
  }
}

/** What differs between the runtime that wrote a checkpoint and this worker's, as the run's notes say it. */
export function runtimeNotes(saved: CheckpointState['runtime'] | undefined, config: RunConfig): string[] {
  if (!saved) return [];
  return fingerprintDifferences(saved, runtimeFingerprint(config.model)).map((d) => `this worker's runtime differs from the one that wrote the checkpoint: ${d}; results may differ in the last bits from here on`);
}

export function createPolicyStateActivities(deps: { host?: PolicyHost; openStore: StoreOpener; faults: FaultPlan; identity: string }) {
  const needHost = (): PolicyHost => requireHost(deps.host);

  /**
   * Runs on the shared policy queue: whichever policy worker takes it becomes the run's pinned worker,
   * unless it has no room for the run beside those it hosts (a retryable WorkerBusy: another worker takes it).
   * Executions from before runs were admitted pass no run.
   */
  async function pinPolicyWorker(run?: RunRef): Promise<PinResult> {
    const host = needHost();
    if (run) host.admit(run, await runData(run.config, run.configHash));
    return { queue: host.queue, identity: deps.identity };
  }

  /** Loads the latest valid checkpoint into a fresh engine on this worker, or a fresh model when there is none. */
  async function loadPolicy(run: RunRef): Promise<LoadPolicyResult> {
    const host = needHost();
    return withHeartbeat(async ({ signal }) => {
      const data = await runData(run.config, run.configHash);
      const store = await deps.openStore(run.config.checkpoint.store);
      const { checkpoint: loaded, skipped } = await loadLatestCheckpoint(store, run.runId, { signal });
      const skippedInvalid = skipped.map((c) => ({ step: c.step, reason: c.reason ?? 'invalid' }));
      const hosted = await host.start(run, data);
      if (!loaded) {
        await hosted.engine.setTag(versionOf(run, -1));
        return { checkpoint: null, skippedInvalid, runtimeNotes: [] };
      }
      const latest = loaded.ref;
      const state = checkpointState(loaded);
      // A resume may have changed fields that leave the checkpoint's meaning alone (dro/resumable.ts); never others.
      if (state.configHash !== run.configHash) {
        const refused = unresumableDifferences(parseCheckpointConfig(state.config, latest.step), run.config);
        if (refused.length > 0) {
          throw failure(
            'InvalidConfig',
            `checkpoint ${latest.step} of run ${run.runId} was written with config ${state.configHash.slice(0, 12)}, this run has ${run.configHash.slice(0, 12)}, which differs in ${refused.join(', ')}: fields a resume cannot change; resume with the checkpoint's config`,
          );
        }
      }
      const weightsFile = trainedWeightsFile(run.config);
      if (run.config.model.loraRank > 0) await checkLoraBase(hosted.engine, state, `checkpoint ${latest.step} of run ${run.runId}`);
      const reference = latest.step === BASE_STEP ? null : (await loadCheckpoint(store, run.runId, BASE_STEP, { signal })).files[weightsFile]!;
      await hosted.engine.loadState({
        parameters: loaded.files[weightsFile]!,
        optimizer: loaded.files['optimizer.safetensors']!,
        reference,
        tag: versionOf(run, latest.step),
      });
      return { checkpoint: { step: latest.step, position: state.position }, skippedInvalid, runtimeNotes: runtimeNotes(state.runtime, run.config) };
    });
  }

  /** The supervised warm start: sft.steps AdamW steps on demonstrations, then a fresh optimizer and the frozen KL reference. */
  async function warmStart(run: RunRef): Promise<WarmStartResult> {
    const host = needHost();
    const started = performance.now();
    // A retry of a warm start that finished here (its completion was lost) returns its result.
    const { hosted, applied } = await host.requireEither(run.runId, run.configHash, BASE_STEP);
    if (applied) {
      if (hosted.warmStart) return hosted.warmStart;
      throw failure('PolicyStateLost', 'the warm start is applied on this worker but its result is not recorded here');
    }
    const { config } = run;
    const data = await runData(config, run.configHash);
    const { engine } = hosted;
    return withHeartbeat(async ({ report, signal }) => {
      let finalLoss: number | null = null;
      let tokens = 0;
      if (config.sft.steps > 0) {
        const demos = await demonstrationsFor(config, data);
        const byId = new Map(demos.map((d) => [d.id, d]));
        const sampler = new DataSampler([...byId.keys()], initialCursor(config.seed));
        // The state is in flux until the warm start ends: a cancelled one must not look usable.
        await engine.setTag(undefined);
        for (let k = 1; k <= config.sft.steps; k++) {
          const sequences: TrainSequence[] = sampler.nextBatch(config.sft.batchSize).map((id) => byId.get(id)!);
          const [result] = await engine.train([{ sequences, options: { loss: 'sft', learningRate: config.sft.learningRate, ...trainStepOptionsOf(config) } }], { signal });
          finalLoss = result!.loss;
          tokens += result!.tokens;
          report({ sftStep: k, of: config.sft.steps, loss: result!.loss });
        }
        await engine.resetOptimizer();
      }
      await engine.freezeReferencePolicy();
      const result: WarmStartResult = { steps: config.sft.steps, finalLoss, tokens, seconds: seconds(started) };
      hosted.warmStart = result;
      await engine.setTag(versionOf(run, BASE_STEP));
      return result;
    });
  }

  async function demonstrationsFor(config: RunConfig, data: RunData): Promise<(TrainSequence & { id: string })[]> {
    let demos: { id: string; prompt: string; completion: string }[];
    if (config.sft.demonstrations !== null) {
      try {
        const loaded = await loadDemonstrations(config.sft.demonstrations);
        if (loaded.skipped.length > 0) {
          const s = loaded.skipped[0]!;
          throw failure('InvalidData', `sft.demonstrations: ${loaded.skipped.length} bad record(s); first: ${s.file}:${s.line ?? '?'}${s.field ? ` (${s.field})` : ''}: ${s.message}`);
        }
        demos = loaded.demonstrations;
      } catch (err) {
        if (err instanceof Error && err.name === 'ApplicationFailure') throw err;
        throw failure('InvalidData', `sft.demonstrations: ${(err as Error).message}`, err);
      }
    } else {
      demos = syntheticDemonstrations([...data.train.values()] as SyntheticExample[], { seed: config.seed, errorRate: config.sft.slipRate });
    }
    if (demos.length === 0) throw failure('InvalidData', 'sft: there are no demonstrations');
    return demos.map((d) => {
      const prompt = data.promptTextIds(d.prompt);
      const ids = [...prompt, ...data.tokenizer.encode(d.completion), data.eos];
      if (ids.length > data.modelConfig.max_position_embeddings) throw failure('InvalidData', `sft demonstration ${d.id} has ${ids.length} tokens, more than the model's ${data.modelConfig.max_position_embeddings} positions`);
      return { id: d.id, ids, completionStart: prompt.length };
    });
  }

  /** Commits the engine's state as checkpoint `position.step`, then applies retention (the base is always kept). */
  async function saveCheckpoint(run: RunRef, position: LoopPosition): Promise<CheckpointSummary> {
    const host = needHost();
    const started = performance.now();
    const hosted = await host.require(versionOf(run, position.step));
    return withHeartbeat(async ({ signal, report }) => {
      const data = await runData(run.config, run.configHash);
      const store = await deps.openStore(run.config.checkpoint.store);
      const parameters = await hosted.engine.exportParameters();
      const optimizer = await hosted.engine.exportOptimizer();
      const state: CheckpointState = {
        formatVersion: CHECKPOINT_STATE_VERSION,
        runId: run.runId,
        step: position.step,
        position,
        subset: await readSubset(store, data, run.runId, position.subsetVersion, signal),
        config: run.config,
        configHash: run.configHash,
        hyperparameters: (run.hyperparameters ?? []).filter((c) => c.fromStep <= position.step),
        ...configChangesAt(run, position.step),
        runtime: runtimeFingerprint(run.config.model),
      };
      const { model } = run.config;
      const files: Record<string, Uint8Array> = { [trainedWeightsFile(run.config)]: parameters, 'optimizer.safetensors': optimizer };
      if (model.loraRank > 0) {
        state.loraBase = { sha256: await hosted.engine.baseDigest(), path: model.path };
        files[ADAPTER_CONFIG_FILE] = new TextEncoder().encode(adapterConfigJson({ rank: model.loraRank, alpha: model.loraAlpha, targets: model.loraTargets }, model.path));
      }
      report({ uploading: parameters.byteLength + optimizer.byteLength });
      try {
        await commitCheckpoint(withUploadFault(store, deps.faults, position.step), run.runId, position.step, files, state, { signal });
      } catch (err) {
        if (err instanceof CheckpointError && /already committed with different content/.test(err.message)) throw failure('CheckpointConflict', err.message, err);
        throw err;
      }
      const { deleted } = await applyRetention(store, run.runId, { keepLast: run.config.checkpoint.keepLast, keepEvery: run.config.checkpoint.keepEvery, protect: [BASE_STEP] }, { signal });
      return { step: position.step, bytes: parameters.byteLength + optimizer.byteLength, deleted, seconds: seconds(started) };
    });
  }

  /** The run ended: its engine leaves this worker, which has room for another run. */
  async function releasePolicy(run: RunRef): Promise<void> {
    await needHost().release(run.runId);
  }

  return { pinPolicyWorker, loadPolicy, warmStart, saveCheckpoint, releasePolicy };
}

export const defaultIdentity = (): string => `${process.pid}@${hostname()}`;
