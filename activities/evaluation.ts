// Evaluates a committed checkpoint on the held-out examples, in an engine of its own (never a training
// run's state), and stores the result at <runId>/evaluations/<step>.json. Everything it needs comes from
// the store (the checkpoint's state.json holds the run's config), so any policy worker can take it. A
// step already evaluated returns the stored result and computes nothing; so does "the newest checkpoint"
// when the newest one has been evaluated, which is what a scheduled evaluation finds between checkpoints.
import { checkLoraBase, trainedWeightsFile } from './policy-state.js';
import { engineOptions, engineSourceForWeights } from './policy-host.js';
import { EngineClient } from '../engine/index.js';
import { CheckpointError, listCheckpoints, loadCheckpoint, loadLatestCheckpoint, validateRunId, type LoadedCheckpoint } from '../storage/checkpoints.js';
import type { BlobStore } from '../storage/blob-store.js';
import { seconds, withHeartbeat, type StoreOpener } from './context.js';
import { failure } from './errors.js';
import { checkpointState, readEvaluation, writeEvaluation } from './records.js';
import { runData } from './run-data.js';
import { generateInPlan } from './training-step.js';
import type { EvaluationOutcome, EvaluationRequest, EvaluationSummary } from './types.js';

async function storedEvaluation(store: BlobStore, runId: string, step: number): Promise<EvaluationSummary | undefined> {
  const stored = await readEvaluation(store, runId, step);
  if (!stored) return undefined;
  // The stored record also holds every prediction; the activity's answer stays the small summary.
  const { predictions: _predictions, ...summary } = stored;
  return { ...summary, cached: true };
}

export function createEvaluationActivities(deps: { openStore: StoreOpener }) {
  async function runEvaluation(input: EvaluationRequest): Promise<EvaluationOutcome> {
    const started = performance.now();
    const { runId } = input;
    try {
      validateRunId(runId);
    } catch (err) {
      throw failure('InvalidConfig', (err as Error).message, err);
    }
    const store = await deps.openStore(input.store);
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
        const examples = data.eval.slice(0, config.evaluation.examples);
        // The same keys for every checkpoint, so evaluations of one run differ only by the weights.
        const n = config.evaluation.samples;
        const requests = examples.flatMap((e) => Array.from({ length: n }, (_, j) => ({ promptIds: data.promptIds(e), key: { seed: `${config.seed}/eval`, step: 0, exampleId: e.id, sampleIndex: j } })));
        const sampling = { temperature: config.evaluation.temperature, topP: 1, maxNewTokens: config.evaluation.maxNewTokens, stopTokenIds: [data.eos] };
        const results = await generateInPlan(engine, requests, sampling, config.rollout.batchSequences, progress);
        const predictions = examples.map((e, i) => ({ exampleId: e.id, completions: results.slice(i * n, (i + 1) * n).map((r) => data.tokenizer.decode(r.ids, { skipSpecialTokens: true })) }));
        const summary: EvaluationSummary = { step, metrics: data.task.metrics(predictions, examples), examples: examples.length, cached: false, seconds: seconds(started) };
        await writeEvaluation(store, runId, { ...summary, predictions }, progress.signal);
        return summary;
      } finally {
        await engine.dispose();
      }
    });
  }
  return { runEvaluation };
}
