// Evaluates a committed checkpoint on the held-out examples, in an engine of its own (never a training
// run's state), and stores the result at <runId>/evaluations/<step>.json. Everything it needs comes from
// the store (the checkpoint's state.json holds the run's config), so any policy worker can take it. A
// step already evaluated returns the stored result and computes nothing; so does "the newest checkpoint"
// when the newest one has been evaluated, which is what a scheduled evaluation finds between checkpoints.
import { checkLoraBase, trainedWeightsFile } from './policy-state.js';
import { engineOptions, engineSourceForWeights, requireHost, versionOf, type PolicyHost } from './policy-host.js';
import { EngineClient } from '../engine/index.js';
import { CheckpointError, checkpointFile, inspectCheckpoint, listCheckpoints, loadCheckpoint, loadLatestCheckpoint, validateRunId, type LoadedCheckpoint } from '../storage/checkpoints.js';
import type { BlobStore } from '../storage/blob-store.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import { failure } from './errors.js';
import { checkpointState, readCheckpointState, readEvaluation, readJson, runKeys, writeEvaluation, type CheckpointState } from './records.js';
import { runData, type RunData } from './run-data.js';
import { generateInPlan } from './training-step.js';
import type { EvaluationOutcome, EvaluationRequest, EvaluationSummary, PublishedPolicy, RunRef, UnitSummary } from './types.js';
import type { RunConfig } from '../dro/config.js';
import { unitCount, unitRange } from '../dro/units.js';
import { fingerprintId, runtimeFingerprint } from '../engine/index.js';
import { fetchVerified } from './policy-versions.js';
import { isStored, storeUnit } from './units.js';

async function storedEvaluation(store: BlobStore, runId: string, step: number): Promise<EvaluationSummary | undefined> {
  const stored = await readEvaluation(store, runId, step);
  if (!stored) return undefined;
  // The stored record also holds every prediction; the activity's answer stays the small summary.
  const { predictions: _predictions, ...summary } = stored;
  return { ...summary, cached: true };
}

/** An evaluation's requests, the same keys for every checkpoint (evaluations of one run differ only by the weights), and its sampling. */
function evaluationPlan(config: RunConfig, data: RunData) {
  const examples = data.eval.slice(0, config.evaluation.examples);
  const n = config.evaluation.samples;
  const requests = examples.flatMap((e) => Array.from({ length: n }, (_, j) => ({ promptIds: data.promptIds(e), key: { seed: `${config.seed}/eval`, step: 0, exampleId: e.id, sampleIndex: j } })));
  const sampling = { temperature: config.evaluation.temperature, topP: 1, maxNewTokens: config.evaluation.maxNewTokens, stopTokenIds: [data.eos] };
  return { examples, samples: n, requests, sampling };
}

const decoded = (data: RunData, ids: number[]): string => data.tokenizer.decode(ids, { skipSpecialTokens: true });

/** The task's metrics over every completion (in plan order), stored with them as the step's evaluation record. */
async function recordEvaluation(store: BlobStore, runId: string, step: number, config: RunConfig, data: RunData, completions: string[], took: number, signal?: AbortSignal): Promise<EvaluationSummary> {
  const { examples, samples: n } = evaluationPlan(config, data);
  const predictions = examples.map((e, i) => ({ exampleId: e.id, completions: completions.slice(i * n, (i + 1) * n) }));
  const summary: EvaluationSummary = { step, metrics: data.task.metrics(predictions, examples), examples: examples.length, cached: false, seconds: took };
  await writeEvaluation(store, runId, { ...summary, predictions }, signal);
  return summary;
}

/** An evaluation to compute: the checkpoint's step, its trained weights as the version units load, and how many units it makes. */
export interface EvaluationUnits {
  step: number;
  policy: PublishedPolicy;
  units: number;
}

/** One unit of an evaluation: its rollout.batchSequences completions of the plan. */
export interface EvaluationUnitInput {
  runId: string;
  store: string;
  unit: number;
  policy: PublishedPolicy;
}

/** A checkpoint's config and the run reference its evaluation units compute under. */
async function checkpointRun(store: BlobStore, runId: string, step: number): Promise<{ run: RunRef; config: RunConfig; data: RunData; state: CheckpointState }> {
  const state = await readCheckpointState(store, runId, step);
  return { run: { runId, config: state.config, configHash: state.configHash }, config: state.config, data: await runData(state.config, state.configHash), state };
}

export function createEvaluationActivities(deps: { host?: PolicyHost; openStore: StoreOpener; identity: string }) {
  /** The store of an evaluation request, once its run id is one (a bad id would stay bad on a retry). */
  async function requestStore(input: EvaluationRequest): Promise<BlobStore> {
    try {
      validateRunId(input.runId);
    } catch (err) {
      throw failure('InvalidConfig', (err as Error).message, err);
    }
    return deps.openStore(input.store);
  }

  /** Which checkpoint an evaluation request means, and its units; or the outcome when there is nothing to compute (stored, or no checkpoint). */
  async function planEvaluation(input: EvaluationRequest): Promise<EvaluationOutcome | EvaluationUnits> {
    const { runId } = input;
    const store = await requestStore(input);
    let step = input.step;
    if (step === null) {
      const valid = (await listCheckpoints(store, runId, { verify: 'size' })).filter((c) => c.valid);
      // Newest first: one whose weights prove corrupt is passed over, as loading the latest valid checkpoint would.
      for (const c of valid.reverse()) {
        const done = await storedEvaluation(store, runId, c.step);
        if (done) return done;
        if ((await inspectCheckpoint(store, runId, c.step, 'sha256')).valid) {
          step = c.step;
          break;
        }
      }
      if (step === null) return { step: null, message: `run ${runId} has no valid checkpoint in ${input.store} yet` };
    } else {
      const done = await storedEvaluation(store, runId, step);
      if (done) return done;
      const checked = await inspectCheckpoint(store, runId, step, 'sha256');
      // A missing or corrupted checkpoint stays so on a retry: say why and stop.
      if (!checked.valid) throw failure('InvalidData', `cannot evaluate step ${step} of run ${runId}: checkpoint ${checked.prefix} in ${store.location} is not valid: ${checked.reason}`);
    }
    const { config, data, state } = await checkpointRun(store, runId, step);
    const weights = await checkpointFile(store, runId, step, trainedWeightsFile(config));
    const policy: PublishedPolicy = { step, sha256: weights.sha256, bytes: weights.bytes, base: state.loraBase?.sha256 ?? null };
    return { step, policy, units: unitCount(evaluationPlan(config, data).requests.length, config.rollout.batchSequences) };
  }

  /** One unit of an evaluation, on the checkpoint's weights, stored put-if-absent under the checkpoint's step and the weights' sha256. */
  async function evaluationUnit(input: EvaluationUnitInput): Promise<UnitSummary> {
    const started = performance.now();
    const host = requireHost(deps.host);
    const store = await deps.openStore(input.store);
    const { step } = input.policy;
    const { run, config, data } = await checkpointRun(store, input.runId, step);
    const key = runKeys.evaluationUnit(input.runId, step, input.unit, input.policy.sha256.slice(0, 16));
    return withHeartbeat(async (progress) => {
      const fingerprint = fingerprintId(runtimeFingerprint(config.model));
      const done = { unit: input.unit, worker: deps.identity, fingerprint };
      if (await isStored(store, key, progress.signal)) return { ...done, sequences: 0, tokens: 0, stored: 'found' as const, seconds: seconds(started), loadSeconds: 0 };
      const weights = await checkpointFile(store, input.runId, step, trainedWeightsFile(config), { signal: progress.signal });
      const loading = performance.now();
      const { engine, loaded } = await host.forUnit(run, input.policy, data, () => fetchVerified(store, weights.key, input.policy.sha256, progress.signal), 'eval');
      const loadSeconds = loaded ? seconds(loading) : 0;
      const plan = evaluationPlan(config, data);
      const { start, end } = unitRange(input.unit, config.rollout.batchSequences, plan.requests.length);
      const results = await generateInPlan(engine, plan.requests.slice(start, end), plan.sampling, config.rollout.batchSequences, progress);
      if (!(await host.holds(engine, versionOf(run, step)))) throw new Error(`the engine of evaluation unit ${input.unit} of step ${step} no longer holds that step: not stored`);
      const stored = await storeUnit(store, key, { step, unit: input.unit, completions: results.map((r) => decoded(data, r.ids)) }, progress.signal);
      return { ...done, sequences: results.length, tokens: results.reduce((a, r) => a + r.ids.length, 0), stored, seconds: seconds(started), loadSeconds };
    });
  }

  /** The evaluation record from its units, in plan order: exactly what one worker's evaluation stores. */
  async function combineEvaluation(input: { runId: string; store: string; policy: PublishedPolicy; seconds: number }): Promise<EvaluationSummary> {
    const store = await deps.openStore(input.store);
    const { step } = input.policy;
    const { config, data } = await checkpointRun(store, input.runId, step);
    const units = unitCount(evaluationPlan(config, data).requests.length, config.rollout.batchSequences);
    const completions: string[] = [];
    for (let unit = 0; unit < units; unit++) completions.push(...(await readJson<{ completions: string[] }>(store, runKeys.evaluationUnit(input.runId, step, unit, input.policy.sha256.slice(0, 16)))).completions);
    return recordEvaluation(store, input.runId, step, config, data, completions, input.seconds);
  }

  async function runEvaluation(input: EvaluationRequest): Promise<EvaluationOutcome> {
    const started = performance.now();
    const { runId } = input;
    const store = await requestStore(input);
    return withHeartbeat(async (progress) => {
      let checkpoint: LoadedCheckpoint;
      if (input.step === null) {
        // Cheap first: the newest checkpoint evaluated already means there is nothing new to do.
        const newest = (await listCheckpoints(store, runId, { verify: 'size', signal: progress.signal })).filter((c) => c.valid).at(-1);
        if (!newest) return { step: null, message: `run ${runId} has no checkpoint in ${input.store} yet` };
        const done = await storedEvaluation(store, runId, newest.step);
        if (done) return done;
        const latest = await loadLatestCheckpoint(store, runId, { signal: progress.signal });
        if (!latest.checkpoint) return { step: null, message: `run ${runId} has no valid checkpoint in ${input.store} (${latest.skipped.length} invalid)` };
        checkpoint = latest.checkpoint;
        const older = await storedEvaluation(store, runId, checkpoint.ref.step);
        if (older) return older;
      } else {
        const done = await storedEvaluation(store, runId, input.step);
        if (done) return done;
        try {
          checkpoint = await loadCheckpoint(store, runId, input.step, { signal: progress.signal });
        } catch (err) {
          // A missing or corrupted checkpoint stays so on a retry: say why and stop.
          if (err instanceof CheckpointError) throw failure('InvalidData', `cannot evaluate step ${input.step} of run ${runId}: ${err.message}`, err);
          throw err;
        }
      }
      const step = checkpoint.ref.step;
      const state = checkpointState(checkpoint);
      const { config } = state;
      const data = await runData(config, state.configHash);
      const lora = config.model.loraRank > 0;
      const engine = await EngineClient.start(engineSourceForWeights(config, data), engineOptions(config));
      try {
        if (lora) await checkLoraBase(engine, state, `checkpoint ${step} of run ${runId}`);
        await engine.loadState({ parameters: checkpoint.files[trainedWeightsFile(config)]!, optimizer: null, reference: null, tag: { runId, configHash: state.configHash, step } });
        const plan = evaluationPlan(config, data);
        const results = await generateInPlan(engine, plan.requests, plan.sampling, config.rollout.batchSequences, progress);
        return await recordEvaluation(store, runId, step, config, data, results.map((r) => decoded(data, r.ids)), seconds(started), progress.signal);
      } finally {
        await engine.dispose();
      }
    });
  }
  return { runEvaluation, planEvaluation, evaluationUnit, combineEvaluation };
}
